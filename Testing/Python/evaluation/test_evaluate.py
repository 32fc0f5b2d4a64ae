"""The evaluate command: case matching, label selection, CSV, errors, CLI."""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from AttentionUNetSegmentLib.cli import evaluate as evaluate_command
from AttentionUNetSegmentLib.core.errors import InputError
from AttentionUNetSegmentLib.evaluation import evaluate as evaluation

SPACING_XYZ = (0.8, 0.8, 2.5)


def _write(path: Path, array: np.ndarray, spacing=SPACING_XYZ, metadata: dict | None = None) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin((-10.0, 20.0, 5.0))
    for key, value in (metadata or {}).items():
        image.SetMetaData(key, value)
    sitk.WriteImage(image, str(path), useCompression=True)
    return path


def _box(shift_x: int = 0, value: int = 1) -> np.ndarray:
    array = np.zeros((8, 12, 12), np.uint8)
    array[2:6, 3:9, 3 + shift_x:9 + shift_x] = value
    return array


@pytest.fixture()
def decathlon(tmp_path: Path) -> tuple[Path, Path]:
    """Task07-style dataset root with imagesTr/ and labelsTr/, and a prediction folder."""
    root = tmp_path / "Task07_Pancreas"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    pred = tmp_path / "pred"
    pred.mkdir()
    for case in ("pancreas_001", "pancreas_004", "pancreas_005"):
        _write(root / "imagesTr" / f"{case}_0000.nii.gz", np.full((8, 12, 12), -100, np.int16))
        _write(root / "labelsTr" / f"{case}.nii.gz", _box() * 1)
    (root / "labelsTr" / "._pancreas_001.nii.gz").write_bytes(b"AppleDouble junk")   # as in the archive
    (root / "dataset.json").write_text("{}")
    _write(pred / "pancreas_001.nii.gz", _box())                     # perfect
    _write(pred / "pancreas_004_0000.nii.gz", _box(shift_x=3))       # named after the image; half overlap
    _write(pred / "pancreas_005.seg.nrrd", _box(value=2), metadata={  # Slicer segmentation, pancreas = 2
        "Segment0_ID": "Segment_1", "Segment0_Name": "Liver", "Segment0_LabelValue": "1", "Segment0_Layer": "0",
        "Segment1_ID": "Segment_2", "Segment1_Name": "Pancreas", "Segment1_LabelValue": "2", "Segment1_Layer": "0"})
    _write(pred / "pancreas_009.nii.gz", _box())                      # no ground truth
    (pred / "notes.txt").write_text("not an image")
    return pred, root


def test_folders_with_decathlon_naming(decathlon, tmp_path):
    pred, root = decathlon
    csv_path = tmp_path / "metrics.csv"
    rows, summary = evaluation.evaluate(pred, root, csv_path=csv_path)
    by_case = {row["case"]: row for row in rows}
    assert list(by_case) == ["pancreas_001", "pancreas_004", "pancreas_005"]
    assert by_case["pancreas_001"]["dice"] == 1.0 and by_case["pancreas_001"]["hd95_mm"] == 0.0
    assert by_case["pancreas_004"]["dice"] == 0.5                       # 6 columns shifted by 3
    assert by_case["pancreas_004"]["hd95_mm"] == pytest.approx(3 * 0.8, rel=1e-5)
    assert by_case["pancreas_005"]["dice"] == 1.0                       # the "Pancreas" segment's value 2
    assert [Path(p).name for p in summary["unmatched_pred"]] == ["pancreas_009.nii.gz"]
    assert summary["unmatched_gt"] == []
    assert summary["n_cases"] == 3
    assert summary["dice"]["mean"] == pytest.approx(2.5 / 3)
    assert summary["dice"]["median"] == 1.0
    assert summary["dice"]["std"] == pytest.approx(np.std([1, 0.5, 1], ddof=1))
    voxel_ml = 0.8 * 0.8 * 2.5 / 1000
    assert by_case["pancreas_001"]["gt_volume_ml"] == pytest.approx(4 * 6 * 6 * voxel_ml)

    with open(csv_path, newline="") as handle:
        table = list(csv.reader(handle))
    assert table[0] == ["case", "dice", "hd95_mm", "assd_mm", "precision", "recall",
                        "pred_volume_ml", "gt_volume_ml"]
    assert [line[0] for line in table[1:]] == ["pancreas_001", "pancreas_004", "pancreas_005"]
    assert table[2][1] == "0.500000" and float(table[2][2]) == pytest.approx(2.4)
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]   # no temporary file left


def test_totalsegmentator_gt_label_on_real_labels(real_labels_path, tmp_path):
    # Pancreas is 7 in TotalSegmentator's output: evaluating it against itself is perfect.
    rows, _ = evaluation.evaluate(real_labels_path, real_labels_path, label=7, csv_path=tmp_path / "m.csv")
    assert rows[0]["dice"] == 1.0 and rows[0]["hd95_mm"] == 0.0 and rows[0]["assd_mm"] == 0.0
    assert rows[0]["gt_volume_ml"] == pytest.approx(644 * 27 / 1000)   # 644 voxels of 3 mm
    # A binary prediction (pancreas = 1) against the multi-label file, --gt-label 7.
    labels = sitk.ReadImage(str(real_labels_path))
    binary = sitk.Cast(labels == 7, sitk.sitkUInt8)
    binary_path = tmp_path / "pred.nii.gz"
    sitk.WriteImage(binary, str(binary_path))
    rows, _ = evaluation.evaluate(binary_path, real_labels_path, label=1, gt_label=7)
    assert rows[0]["dice"] == 1.0 and rows[0]["hd95_mm"] == 0.0


def test_multi_label_ground_truth_without_gt_label_is_flagged(real_labels_path):
    _, summary = evaluation.evaluate(real_labels_path, real_labels_path)
    assert any("evaluated label 1" in note and "--truth-label" in note for note in summary["notes"])
    _, summary = evaluation.evaluate(real_labels_path, real_labels_path, label=7, gt_label=7)
    assert summary["notes"] == []


def test_decathlon_tumour_merged_with_gt_label_list(tmp_path):
    truth = _box()
    truth[3:5, 4:6, 4:6] = 2                                  # Task07: tumour inside the pancreas
    gt = _write(tmp_path / "pancreas_001.nii.gz", truth)
    pred = _write(tmp_path / "pred.nii.gz", _box())           # whole organ, tumour included
    rows, summary = evaluation.evaluate(pred, gt)
    assert rows[0]["dice"] < 1.0
    assert any("1,2 for Decathlon Task07" in note for note in summary["notes"])
    rows, summary = evaluation.evaluate(pred, gt, gt_label="1,2")
    assert rows[0]["dice"] == 1.0 and summary["notes"] == []


def test_notes_are_grouped_per_message(tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    for case in "abc":
        _write(pred / f"{case}.nii.gz", np.zeros((8, 12, 12), np.uint8))
        _write(gt / f"{case}.nii.gz", _box())
    _, summary = evaluation.evaluate(pred, gt)
    assert summary["notes"] == ["prediction is empty (3 files: a.nii.gz, b.nii.gz, c.nii.gz)"]


def test_wrong_label_is_reported(real_labels_path, tmp_path):
    binary = sitk.Cast(sitk.ReadImage(str(real_labels_path)) == 7, sitk.sitkUInt8)
    binary_path = tmp_path / "pred.nii.gz"
    sitk.WriteImage(binary, str(binary_path))
    rows, summary = evaluation.evaluate(binary_path, real_labels_path, label=1, gt_label=200)
    assert rows[0]["dice"] == 0.0 and math.isinf(rows[0]["hd95_mm"])
    assert any("no voxel with label 200" in note and "--truth-label" in note for note in summary["notes"])
    assert summary["hd95_mm"]["n_inf"] == 1


def test_no_match_and_missing_inputs(tmp_path):
    pred = tmp_path / "pred"
    gt = tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    _write(pred / "a.nii.gz", _box())
    _write(gt / "b.nii.gz", _box())
    with pytest.raises(InputError, match=r"no prediction matches .* \(predictions: a.nii.gz; ground truth: b.nii.gz\)"):
        evaluation.evaluate(pred, gt)
    with pytest.raises(InputError, match="ground truth does not exist"):
        evaluation.evaluate(pred, tmp_path / "nowhere")
    with pytest.raises(InputError, match="is a folder but the ground truth is a single file"):
        evaluation.evaluate(pred, gt / "b.nii.gz")
    with pytest.raises(InputError, match="no ground truth for case 'a'"):
        evaluation.evaluate(pred / "a.nii.gz", gt)


def test_images_folder_as_ground_truth_is_rejected(decathlon):
    pred, root = decathlon
    with pytest.raises(InputError, match="pass the labels folder"):
        evaluation.evaluate(pred, root / "imagesTr")


def test_two_predictions_for_one_case_is_an_error(decathlon):
    pred, root = decathlon
    _write(pred / "pancreas_001.seg.nrrd", _box())
    with pytest.raises(InputError, match="two files for case 'pancreas_001'"):
        evaluation.evaluate(pred, root)


def test_grid_mismatch_names_files(tmp_path):
    pred = _write(tmp_path / "p.nii.gz", _box(), spacing=(2.0, 2.0, 2.0))
    gt = _write(tmp_path / "g.nii.gz", _box())
    with pytest.raises(InputError) as raised:
        evaluation.evaluate(pred, gt)
    assert str(raised.value).startswith(f"{pred}: prediction and ground truth ({gt}) are on different grids: "
                                        "spacing (2, 2, 2) vs (0.8, 0.8, 2.5)")


def test_seg_nrrd_explicit_label_and_missing_segment(tmp_path):
    meta = {"Segment0_ID": "Segment_1", "Segment0_Name": "Liver", "Segment0_LabelValue": "1"}
    pred = _write(tmp_path / "p.seg.nrrd", _box(), metadata=meta)
    gt = _write(tmp_path / "g.nii.gz", _box())
    rows, summary = evaluation.evaluate(pred, gt)     # no "Pancreas": falls back to 1, with a note
    assert rows[0]["dice"] == 1.0
    assert any("no segment named Pancreas" in note for note in summary["notes"])
    with pytest.raises(InputError, match=r"no segment with label value 3 \(segments: Liver=1\)"):
        evaluation.evaluate(pred, gt, label=3)


def test_multi_layer_seg_nrrd_selects_the_segment_layer(tmp_path):
    layers = np.stack([_box(value=1), _box(shift_x=3, value=1)], axis=-1)   # (z, y, x, layer)
    image = sitk.GetImageFromArray(layers, isVector=True)
    image.SetSpacing(SPACING_XYZ)
    image.SetOrigin((-10.0, 20.0, 5.0))
    for key, value in {"Segment0_ID": "a", "Segment0_Name": "Liver", "Segment0_LabelValue": "1",
                       "Segment0_Layer": "0", "Segment1_ID": "b", "Segment1_Name": "pancreas",
                       "Segment1_LabelValue": "1", "Segment1_Layer": "1"}.items():
        image.SetMetaData(key, value)
    pred = tmp_path / "p.seg.nrrd"
    sitk.WriteImage(image, str(pred))
    gt = _write(tmp_path / "g.nii.gz", _box(shift_x=3))
    rows, _ = evaluation.evaluate(pred, gt)
    assert rows[0]["dice"] == 1.0
    with pytest.raises(InputError, match="several layers"):
        evaluation.evaluate(pred, gt, label=1)


def test_ct_given_as_ground_truth_is_rejected(real_ct_path, real_labels_path):
    with pytest.raises(InputError, match="negative values"):
        evaluation.evaluate(real_labels_path, real_ct_path, label=7)


def test_bad_label_and_csv_paths(tmp_path):
    pred = _write(tmp_path / "p.nii.gz", _box())
    with pytest.raises(InputError, match="--pred-label must be positive label values"):
        evaluation.evaluate(pred, pred, label=0)
    with pytest.raises(InputError, match="--truth-label 'x': expected merge, N"):
        evaluation.evaluate(pred, pred, gt_label="x")
    with pytest.raises(InputError, match="--truth-label '1:1,2:2': evaluation scores one structure"):
        evaluation.evaluate(pred, pred, gt_label="1:1,2:2")
    with pytest.raises(InputError, match="cannot be written: folder .* does not exist"):
        evaluation.evaluate(pred, pred, csv_path=tmp_path / "missing" / "m.csv")
    with pytest.raises(InputError, match="unsupported output type .*; use one of .csv"):
        evaluation.evaluate(pred, pred, csv_path=pred)     # never overwrites an input


def _parse(argv: list[str]):
    parser = argparse.ArgumentParser(prog="attention-unet-segment")
    evaluate_command.register_cli(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli_table_and_summary(decathlon, tmp_path, capsys):
    pred, root = decathlon
    csv_path = tmp_path / "out.csv"
    args = _parse(["evaluate", str(pred), str(root), "-o", str(csv_path)])
    assert args.func is evaluate_command.run_cli and args.label is None and args.gt_label is None
    assert args.func(args) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].split()[:3] == ["case", "Dice", "HD95"]
    assert lines[1].split()[:3] == ["pancreas_001", "1.0000", "0.00"]
    assert "3 case(s): mean ± std (median)" in captured.out
    assert "Dice       0.8333 ± 0.2887 (1.0000)" in captured.out
    assert "1 prediction(s) without ground truth, not evaluated: pancreas_009.nii.gz" in captured.err
    assert csv_path.exists()


def test_cli_input_error_propagates_as_one_line(tmp_path):
    # The main CLI prints InputError as "error: <str>" and exits 2; run_cli must let it through.
    args = _parse(["evaluate", str(tmp_path), str(tmp_path / "nowhere"), "--truth-label", "7"])
    assert args.gt_label == (7,)
    assert _parse(["evaluate", "a", "b", "--truth-label", "2,1"]).gt_label == (1, 2)
    with pytest.raises(SystemExit):
        _parse(["evaluate", "a", "b", "--pred-label", "pancreas"])
    with pytest.raises(InputError) as raised:
        args.func(args)
    assert str(raised.value) == f"{tmp_path / 'nowhere'}: ground truth does not exist"


@pytest.mark.parametrize("argv, label, gt_label, csv", [
    (["--pred-label", "1", "--truth-label", "7:1", "-o", "m.csv"], (1,), (7,), "m.csv"),
    (["--truth-label", "1:1,2:1"], None, (1, 2), None),
    (["--truth-label", "merge"], None, (), None),
])
def test_one_label_syntax(argv, label, gt_label, csv):
    args = _parse(["evaluate", "a", "b", *argv])
    assert (args.label, args.gt_label, args.csv) == (label, gt_label, csv)


def test_old_spellings_still_work_with_one_warning_each(capsys):
    args = _parse(["evaluate", "a", "b", "--label", "1", "--gt-label", "1,2", "--csv", "m.csv"])
    assert (args.label, args.gt_label, args.csv) == ((1,), (1, 2), "m.csv")
    assert capsys.readouterr().err.splitlines() == [
        "warning: --label is deprecated; use --pred-label", "warning: --gt-label is deprecated; use --truth-label",
        "warning: --csv is deprecated; use -o/--output"]


def test_merge_scores_every_label_of_the_truth(tmp_path):
    pred = _write(tmp_path / "p.nii.gz", _box())
    truth = _box(value=2)          # the same box, as value 2
    truth[0, 0, 0] = 5             # and one voxel of value 5
    gt = _write(tmp_path / "g.nii.gz", truth)
    merged, _ = evaluation.evaluate(pred, gt, gt_label="merge")
    only_2, _ = evaluation.evaluate(pred, gt, gt_label="2")
    assert only_2[0]["dice"] == 1.0 and merged[0]["dice"] < 1.0
    assert merged[0]["gt_volume_ml"] > only_2[0]["gt_volume_ml"]
