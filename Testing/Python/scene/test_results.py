"""Results read from the `segment` command's files (attention maps on any grid) or computed in process."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("slicer")

from AttentionUNetSegmentLib.scene.results import load_output_files, run_segmentation_in_process  # noqa: E402
from AttentionUNetSegmentLib.service.contract import ATTENTION_DIR, LABELS_FILE, SUMMARY_FILE  # noqa: E402


def test_attention_files_keep_their_own_grid(tmp_path):
    labels = sitk.Image([20, 18, 10], sitk.sitkUInt16)
    labels.SetSpacing((1.5, 1.5, 3.0))
    labels.SetOrigin((10.0, -4.0, 2.0))
    sitk.WriteImage(labels, str(tmp_path / LABELS_FILE))
    (tmp_path / ATTENTION_DIR).mkdir()
    coarse = sitk.GetImageFromArray(np.linspace(0, 1, 5 * 5 * 3).reshape(3, 5, 5).astype(np.float64))
    coarse.SetSpacing((6.0, 5.4, 10.0))
    coarse.SetOrigin((12.25, -1.95, 5.5))
    coarse.SetDirection((0, 1, 0, 1, 0, 0, 0, 0, 1))
    sitk.WriteImage(coarse, str(tmp_path / ATTENTION_DIR / "attention_gate4.nrrd"))
    (tmp_path / SUMMARY_FILE).write_text(json.dumps({"gates": ["gate4"], "device": "cpu"}))

    output = load_output_files(tmp_path)
    assert output.labelmap.GetPixelID() == sitk.sitkUInt8 and output.labelmap.GetSize() == (20, 18, 10)
    gate4 = output.attention["gate4"]
    assert gate4.GetPixelID() == sitk.sitkFloat32
    assert gate4.GetSize() == (5, 5, 3)
    np.testing.assert_allclose(gate4.GetSpacing(), (6.0, 5.4, 10.0))
    np.testing.assert_allclose(gate4.GetOrigin(), (12.25, -1.95, 5.5))
    np.testing.assert_allclose(gate4.GetDirection(), (0, 1, 0, 1, 0, 0, 0, 0, 1))
    assert output.labels[0]["name"] == "Pancreas" and output.summary["device"] == "cpu"


def test_in_process_run_gives_the_same_result_as_the_job(finished_job, small_ct, tiny_model_path):
    job, status, files, _ = finished_job
    assert status.state == "succeeded"
    fractions = []
    output = run_segmentation_in_process(small_ct, tiny_model_path, device="cpu", overlap=0.0,
                                         progress=lambda fraction, message: fractions.append(fraction))
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(output.labelmap), files["labels"])
    for gate in ("gate2", "gate3", "gate4"):
        np.testing.assert_allclose(sitk.GetArrayViewFromImage(output.attention[gate]),
                                   files[f"attention_{gate}.nrrd"], atol=1e-6)
    assert output.labels == job.result().labels and fractions[-1] == 1.0
