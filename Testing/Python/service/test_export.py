"""service/export.py: a prediction made elsewhere (labels on the CT's grid, maps on their own
grids) becomes files, all or nothing, through one format dispatch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from AttentionUNetSegmentLib.core.geometry import coarse_grid
from AttentionUNetSegmentLib.core.labels import PANCREAS
from AttentionUNetSegmentLib.core.pipeline import Prediction
from AttentionUNetSegmentLib.service.export import OutputTargets, export_prediction


def _prediction(with_probabilities: bool = True) -> Prediction:
    ct = sitk.Image([20, 16, 8], sitk.sitkInt16)
    ct.SetSpacing((1.5, 1.5, 3.0))
    ct.SetOrigin((-10.0, 4.0, 2.0))
    labels = np.zeros((8, 16, 20), np.uint8)
    labels[2:5, 4:9, 5:12] = 1
    labelmap = sitk.GetImageFromArray(labels)
    labelmap.CopyInformation(ct)
    grid = coarse_grid(ct, 2)
    gate = sitk.GetImageFromArray(np.random.default_rng(0).random(tuple(reversed(grid.GetSize()))).astype(np.float32))
    gate.CopyInformation(grid)
    probabilities = sitk.Cast(labelmap, sitk.sitkFloat32) if with_probabilities else None
    return Prediction(labelmap, [PANCREAS], {"gate2": gate}, probabilities)


@pytest.mark.parametrize("labels_name, map_format", [("seg.nii.gz", "nii.gz"), ("seg.seg.nrrd", "nrrd")])
def test_a_prediction_made_elsewhere_is_exported_on_its_grids(tmp_path, labels_name, map_format):
    prediction = _prediction()
    targets = OutputTargets(tmp_path / labels_name, tmp_path / "p.nii.gz", tmp_path / "maps",
                            tmp_path / "summary.json", map_format)
    summary = {"seconds": {"inference": 1.0}, "volume_ml": prediction.volume_ml()}
    export_prediction(prediction, targets, summary)
    labels = sitk.ReadImage(str(targets.labels))
    assert labels.GetSize() == prediction.labelmap.GetSize() and labels.GetOrigin() == prediction.labelmap.GetOrigin()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(labels), sitk.GetArrayFromImage(prediction.labelmap))
    gate = sitk.ReadImage(str(tmp_path / "maps" / f"attention_gate2.{map_format}"))
    assert gate.GetSize() == prediction.attention["gate2"].GetSize()
    np.testing.assert_allclose(gate.GetSpacing(), prediction.attention["gate2"].GetSpacing())
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["seconds"]["total"] == pytest.approx(1.0 + written["seconds"]["write"])
    assert written["volume_ml"]["Pancreas"] == pytest.approx(105 * 1.5 * 1.5 * 3.0 / 1000)


def test_export_is_all_or_nothing(tmp_path):
    (tmp_path / "blocker").write_text("a file where the attention folder's parent should be")
    targets = OutputTargets(tmp_path / "seg.nii.gz", tmp_path / "p.nii.gz", tmp_path / "blocker" / "maps")
    with pytest.raises(OSError):
        export_prediction(_prediction(), targets)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]


def test_without_maps_only_the_labels_are_written(tmp_path):
    prediction = _prediction(with_probabilities=False)
    prediction.attention = {}
    export_prediction(prediction, OutputTargets(tmp_path / "seg.nrrd", tmp_path / "p.nii.gz", tmp_path / "maps"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seg.nrrd"]
