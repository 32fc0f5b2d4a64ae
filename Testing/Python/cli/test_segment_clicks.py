"""`segment` with clicks: repeatable --point / --exclude-point in command-line order, a
click-conditioned model replaying them (the same result as clicking one by one), and one clear
line when the clicks do not suit the model."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from AttentionUNetSegmentLib.cli.main import build_parser, main
from AttentionUNetSegmentLib.core.options import Click

# Two points inside the TotalSegmentator example (RAS mm): in the liver and in the spleen.
LIVER, SPLEEN = (98.0, 164.3, 151.3), (-112.0, 110.3, 157.3)


def _text(point) -> str:
    return ",".join(f"{v:g}" for v in point)


def test_points_keep_their_command_line_order_and_negative_values(tmp_path):
    from AttentionUNetSegmentLib.cli.argtypes import join_negative_values
    from AttentionUNetSegmentLib.cli.segment import request_from_args

    argv = ["segment", "ct.nii.gz", "-o", str(tmp_path / "o.nii.gz"), "--point", "-12.5,30,4",
            "--exclude-point", "-1,-2,-3", "--point=5,6,7"]
    args = build_parser().parse_args(join_negative_values(argv))
    region = request_from_args(args).region
    assert region.clicks == (Click((-12.5, 30, 4), True), Click((-1, -2, -3), False), Click((5, 6, 7), True))
    assert region.point_ras == (-12.5, 30.0, 4.0)


def test_a_click_model_replays_the_clicks_like_clicking_one_by_one(tmp_path, real_ct_path, tiny_click_model_path):
    from AttentionUNetSegmentLib.core.interactive import InteractiveSession
    from AttentionUNetSegmentLib.core.options import MapOptions, WindowOptions
    from AttentionUNetSegmentLib.files.modelfile import load_model

    out = tmp_path / "clicks.seg.nrrd"
    code = main(["segment", str(real_ct_path), "-o", str(out), "--model", str(tiny_click_model_path),
                 "--point", _text(LIVER), "--exclude-point", _text(SPLEEN), "--attention-dir", str(tmp_path / "att"),
                 "--device", "cpu", "--progress", "none"])
    assert code == 0
    written = sitk.ReadImage(str(out))
    ct = sitk.ReadImage(str(real_ct_path))
    assert written.GetSize() == ct.GetSize() and np.allclose(written.GetOrigin(), ct.GetOrigin())
    assert len(list((tmp_path / "att").glob("attention_gate*.nii.gz"))) == 3

    network, spec = load_model(tiny_click_model_path)
    session = InteractiveSession(ct, network, spec, WindowOptions(device="cpu"), MapOptions(attention=False))
    session.add_click(LIVER, True)
    one_by_one = session.add_click(SPLEEN, False).labelmap
    assert np.array_equal(sitk.GetArrayFromImage(written) > 0, sitk.GetArrayFromImage(one_by_one) > 0)


@pytest.mark.parametrize("clicks, model, message", [
    ([], "click", "give at least one --point"),
    (["--exclude-point", _text(SPLEEN), "--point", _text(LIVER)], "click", "first click must be an include click"),
    (["--point", _text(LIVER), "--point", _text(SPLEEN)], "automatic", "has no click channels"),
    (["--point", _text(LIVER), "--exclude-point", _text(SPLEEN)], "automatic", "has no click channels"),
])
def test_clicks_that_do_not_suit_the_model_get_one_line(tmp_path, capsys, real_ct_path, tiny_click_model_path,
                                                        tiny_model_path, clicks, model, message):
    path = tiny_click_model_path if model == "click" else tiny_model_path
    out = tmp_path / "o.nii.gz"
    code = main(["segment", str(real_ct_path), "-o", str(out), "--model", str(path), "--device", "cpu",
                 "--progress", "none", *clicks])
    assert code == 2 and not out.exists()
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: ") and message in error
