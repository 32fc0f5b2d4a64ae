"""Fixtures of the Slicer-side tests: a real MRML scene, VTK errors failing the test, a small real CT,
and one finished background job shared by the tests that read its result."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import SimpleITK as sitk


def _import_slicer_without_the_test_folder() -> None:
    """Import the `slicer` meta-package before Testing/Python is on sys.path for it.

    slicer-core's `slicer/__init__.py` extends its package path with every folder named `slicer`
    on sys.path and imports all modules there, copying their names into `slicer`. pytest puts
    Testing/Python on sys.path, so this very folder would be taken for part of Slicer, and every
    test file here imported (and re-run) as `slicer.test_...`. Importing it once without that
    entry keeps the package path to the real Slicer modules. (A run that imports `slicer` before
    this file is loaded, e.g. `pytest Testing/Python/files`, still imports this folder's modules
    as `slicer.<name>`: the test files therefore put their own folder on sys.path before importing
    the helpers beside them. The lasting fix is this pre-import in Testing/Python/conftest.py.)
    """
    tests_root = Path(__file__).resolve().parents[1]
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != tests_root]
    try:
        import slicer  # noqa: F401
    except ImportError:
        pass  # no slicer-core: the tests that need it skip
    finally:
        sys.path[:] = saved


_import_slicer_without_the_test_folder()


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
    from AttentionUNetSegmentLib.slicer.job import SUCCEEDED, SegmentationJob
    from AttentionUNetSegmentLib.slicer.results import ATTENTION_DIR, LABELS_FILE

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
