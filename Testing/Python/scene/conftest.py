"""Fixtures of the Slicer-side tests: a real MRML scene, VTK errors failing the test, a small real CT,
and one finished background job shared by the tests that read its result."""

from __future__ import annotations

import sys

import pytest
import SimpleITK as sitk


@pytest.fixture(autouse=True)
def vtk_errors():
    """Collect VTK/MRML messages; a test fails if any error was logged."""
    try:
        import vtk
    except ImportError:
        yield None
        return
    window = vtk.vtkStringOutputWindow()
    previous = vtk.vtkOutputWindow.GetInstance()
    vtk.vtkOutputWindow.SetInstance(window)
    yield window
    vtk.vtkOutputWindow.SetInstance(previous)
    assert "ERROR:" not in window.GetOutput(), window.GetOutput()


@pytest.fixture
def mrml(monkeypatch):
    slicer = pytest.importorskip("slicer")
    from mrml_helpers import Mrml

    state = Mrml()
    monkeypatch.setattr(slicer, "mrmlScene", state.scene, raising=False)
    return state


@pytest.fixture(scope="session")
def small_ct(real_ct_path) -> sitk.Image:
    """The pancreas region of the real CT (64 x 48 x 16 voxels, 3 mm): fast with the tiny model."""
    ct = sitk.ReadImage(str(real_ct_path))
    return sitk.RegionOfInterest(ct, [64, 48, 16], [20, 30, 2])  # size, then start index (x, y, z)


@pytest.fixture(scope="session")
def finished_job(small_ct, tiny_model_path, tmp_path_factory):
    """One successful background job; the result files are read before the work folder goes."""
    pytest.importorskip("slicer")
    from AttentionUNetSegmentLib.scene.job import SUCCEEDED, SegmentationJob
    from AttentionUNetSegmentLib.service.contract import ATTENTION_DIR, LABELS_FILE

    work_root = tmp_path_factory.mktemp("jobs")
    job = SegmentationJob(small_ct, model_path=tiny_model_path, device="cpu", overlap=0.0,
                          python_executable=sys.executable, work_root=str(work_root))
    job.start()
    status = job.wait(timeout=120)
    files = {}
    if status.state == SUCCEEDED:
        files["labels"] = sitk.GetArrayFromImage(sitk.ReadImage(str(job.work_dir / LABELS_FILE)))
        for path in sorted((job.work_dir / ATTENTION_DIR).iterdir()):
            files[path.name] = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    job.cleanup()
    return job, status, files, work_root
