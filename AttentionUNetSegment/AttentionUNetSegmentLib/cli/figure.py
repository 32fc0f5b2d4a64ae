"""`attention-unet-segment figure`: a PNG of a segmented CT with its attention maps (and the
ground truth, if given), drawn from the files `segment` wrote. This is how the README's real-CT
figure is made; it needs matplotlib (the `figures` extra)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.errors import InputError
from ..core.labels import LABELS_SYNTAX
from .argtypes import label_values


def register_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "figure",
        help="draw a PNG of a segmented CT: its segmentation, each attention map, the ground truth",
        description="Draw the axial and coronal slices through the segmentation's centre: the CT with "
        "the segmentation (and ground-truth) outline, then each attention gate's map over the CT. Maps "
        "and labels are resampled onto the CT's grid in physical space, so maps on their own coarse "
        "grids (segment's default) and labels stored in another orientation are drawn where they lie.",
    )
    p.add_argument("ct", metavar="CT", help="the CT that was segmented (a file or a DICOM series folder)")
    p.add_argument("labelmap", metavar="LABELMAP", help="segment's output (.nii.gz, .nrrd, .seg.nrrd, ...)")
    p.add_argument("-o", "--output", required=True, metavar="PNG", help="figure to write")
    p.add_argument("--attention-dir", metavar="DIR",
                   help="segment's --attention-dir: every attention_<gate>.nii.gz / .nrrd in it is drawn")
    p.add_argument("--truth", metavar="FILE", help="ground-truth labelmap, outlined and scored (Dice)")
    p.add_argument("--truth-label", type=label_values("--truth-label"), default=None, metavar="LABELS",
                   help=f"label value(s) of the pancreas in --truth ({LABELS_SYNTAX}; default: 1, or the "
                   "segment named Pancreas)")
    p.add_argument("--title", help="figure title (default: the Dice against --truth, if given)")
    p.set_defaults(func=run_cli)


def _on_ct_grid(image, ct, nearest: bool):
    """`image` resampled onto `ct`'s grid in physical space ((z, y, x) array, canonical order)."""
    import SimpleITK as sitk

    from ..core.geometry import to_canonical

    interpolator = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    resampled = sitk.Resample(image, ct, sitk.Transform(), interpolator, 0.0, image.GetPixelID())
    return sitk.GetArrayFromImage(to_canonical(resampled))


def _mask(path: Path, labels, ct):
    import numpy as np

    from ..evaluation.evaluate import read_labelmap

    image, values, _ = read_labelmap(path, labels)
    return np.isin(_on_ct_grid(image, ct, nearest=True), values)


def _attention_maps(folder: Path, ct) -> dict:
    from ..files.attention import read_attention_maps

    if not folder.is_dir():
        raise InputError(folder, "is not a folder (pass segment's --attention-dir)")
    maps = read_attention_maps(folder)
    if not maps:
        raise InputError(folder, "holds no attention_<gate> map (segment --attention-dir writes them)")
    return {gate: _on_ct_grid(image, ct, nearest=False) for gate, image in maps.items()}


def run_cli(args: argparse.Namespace) -> int:
    import SimpleITK as sitk

    from ..core.geometry import to_canonical
    from ..files.reading import read_ct
    from ..files.writing import check_output_path
    from ..reports.figures import FiguresUnavailable, segmentation_figure

    inputs = [args.ct, args.labelmap] + ([args.truth] if args.truth else [])
    output = check_output_path(args.output, inputs, extensions=(".png",))
    ct = read_ct(args.ct)
    label = _mask(Path(args.labelmap), None, ct)
    truth = _mask(Path(args.truth), args.truth_label, ct) if args.truth else None
    attention = _attention_maps(Path(args.attention_dir), ct) if args.attention_dir else {}
    canonical = to_canonical(ct)
    try:
        segmentation_figure(output, sitk.GetArrayFromImage(canonical), tuple(reversed(canonical.GetSpacing())),
                            label, attention, truth_zyx=truth, title=args.title)
    except FiguresUnavailable as missing:
        raise InputError(output, f"cannot be drawn: {missing}") from None
    print(f"wrote {output}")
    return 0
