"""Scene-side logic of the Slicer module: a CT volume node in, segmentation and attention overlays out.

This file imports `slicer` and `vtk` (Slicer's MRML library; the `slicer-core` wheel outside
Slicer) but never `qt`, so everything here runs and is tested headless against a real
`vtkMRMLScene`. The module file `AttentionUNetSegment.py` only wires it to the GUI.

    volume node --volume_node_to_image--> SimpleITK image (LPS; arrays (z, y, x) = (k, j, i))
      --SegmentationJob--> background process `python -m AttentionUNetSegmentLib segment ...`
          (JSON progress lines on stderr; cancel = terminate, then kill after 1 s)
      --SegmentationOutput--> SceneLogic.apply_result, one batch of scene changes:
          segmentation node "<CT> pancreas" (terminology, colour, 3D surface, next to the CT),
          one overlay volume per attention gate plus their maximum, a shared inferno colour table
      --SceneLogic.show_overlay--> foreground layer + opacity of every slice view (no re-run)

Nothing touches the scene until a job has succeeded: cancel and failure leave it as it was.
torch is imported only in the background process or by `run_segmentation_in_process`, never
when the module loads (Slicer may not have PyTorch yet).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import SimpleITK as sitk
import slicer
import vtk
from vtk.util import numpy_support

from ..core.errors import InputError
from ..files.resources import attention_color_table_path

logger = logging.getLogger(__name__)

#: Node reference roles on the CT volume node: its results are found (and re-used) through them.
SEGMENTATION_ROLE = "AttentionUNetSegment.Segmentation"
OVERLAY_ROLE_PREFIX = "AttentionUNetSegment.Attention."
#: Node attributes that mark our nodes.
GATE_ATTRIBUTE = "AttentionUNetSegment.Gate"
MODULE_ATTRIBUTE = "AttentionUNetSegment.Output"
COLOR_TABLE_ATTRIBUTE = "AttentionUNetSegment.ColorTable"
#: Overlay choices besides the gate names.
MAX_GATE = "max"
NO_OVERLAY = "none"
COLOR_TABLE_NAME = "AttentionInferno"
#: Attention below this is not drawn (display threshold: the CT shows through where the network
#: paid no attention); the colour table file's alpha ramp ends at the same value.
OVERLAY_LOWER_THRESHOLD = 0.1
DEFAULT_OPACITY = 0.6
#: Result files of the `segment` command inside a job's work folder.
INPUT_FILE = "input.nrrd"
LABELS_FILE = "labels.nrrd"
ATTENTION_DIR = "attention"
SUMMARY_FILE = "summary.json"

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])

# ----------------------------------------------------------------------------------------------
# Colour table of the overlays: Resources/ColorTables/AttentionInferno.txt, made from matplotlib's
# inferno by reports.figures.attention_color_table_text() (a test keeps the two equal). Read here
# rather than computed so that Slicer needs no plotting library.
# ----------------------------------------------------------------------------------------------

def attention_color_table(path: Optional[os.PathLike | str] = None) -> np.ndarray:
    """(256, 4) uint8 RGBA from the colour table file (`index name R G B A` lines)."""
    rows = [line.split() for line in Path(path or attention_color_table_path()).read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    return np.array([[int(v) for v in row[2:6]] for row in rows], dtype=np.uint8)


# ----------------------------------------------------------------------------------------------
# Volume node <-> SimpleITK image
# ----------------------------------------------------------------------------------------------

def _matrix_to_array(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def volume_geometry_lps(volume_node) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """(origin, spacing, direction) of a volume node in SimpleITK's LPS convention.

    Slicer keeps IJK-to-RAS as origin + spacing + direction columns; SimpleITK keeps the same
    grid in LPS. Spacing is taken as stored (no re-normalisation); direction is row-major 3x3.
    """
    directions = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASDirectionMatrix(directions)
    direction_lps = _RAS_TO_LPS @ _matrix_to_array(directions)[:3, :3]
    origin_lps = _RAS_TO_LPS @ np.asarray(volume_node.GetOrigin(), dtype=float)
    return (tuple(float(v) for v in origin_lps), tuple(float(v) for v in volume_node.GetSpacing()),
            tuple(float(v) for v in direction_lps.ravel()))


def _array_view(volume_node) -> np.ndarray:
    """(k, j, i) view of a single-component volume node's voxels (no copy)."""
    image_data = volume_node.GetImageData()
    scalars = image_data.GetPointData().GetScalars() if image_data is not None else None
    if scalars is None:
        raise InputError(volume_node.GetName(), "has no voxels (empty volume)")
    dims = image_data.GetDimensions()
    return numpy_support.vtk_to_numpy(scalars).reshape(dims[2], dims[1], dims[0])


def check_input_volume(volume_node) -> None:
    """Structural checks a CT volume node must pass; raises InputError naming the node."""
    if volume_node is None:
        raise InputError(None, "no input volume selected: load a CT and choose it as input volume")
    name = volume_node.GetName()
    if not volume_node.IsA("vtkMRMLScalarVolumeNode") or volume_node.IsA("vtkMRMLLabelMapVolumeNode"):
        raise InputError(name, "is not a CT volume (a labelmap or another kind of node); choose the CT")
    image_data = volume_node.GetImageData()
    if image_data is None or image_data.GetPointData().GetScalars() is None:
        raise InputError(name, "has no voxels (empty volume)")
    if image_data.GetNumberOfScalarComponents() != 1:
        raise InputError(name, f"has {image_data.GetNumberOfScalarComponents()} components per voxel "
                               "(colour or vector image); a CT has one")
    dims = image_data.GetDimensions()
    if min(dims) < 2:
        raise InputError(name, f"is a single slice ({dims[0]}x{dims[1]}x{dims[2]}); a 3D CT volume is needed")


def volume_node_to_image(volume_node) -> sitk.Image:
    """A copy of the volume's voxels as a SimpleITK image with the exact same grid (LPS).

    Voxel (i, j, k) of the node is pixel (x, y, z) of the image and element [k, j, i] of
    `sitk.GetArrayFromImage`. A parent transform is not applied: results are computed on the
    volume's own grid and are placed under the same transform.
    """
    check_input_volume(volume_node)
    image = sitk.GetImageFromArray(np.ascontiguousarray(_array_view(volume_node)))  # copies
    origin, spacing, direction = volume_geometry_lps(volume_node)
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    return image


def image_to_volume_node(image: sitk.Image, volume_node) -> None:
    """Give `volume_node` the voxels (a copy) and exact grid of a 3D SimpleITK image (LPS -> RAS)."""
    direction_ras = _RAS_TO_LPS @ np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    matrix = vtk.vtkMatrix4x4()
    for r in range(3):
        for c in range(3):
            matrix.SetElement(r, c, direction_ras[r, c])
    volume_node.SetIJKToRASDirectionMatrix(matrix)
    volume_node.SetSpacing(*(float(v) for v in image.GetSpacing()))
    volume_node.SetOrigin(*(float(v) for v in _RAS_TO_LPS @ np.asarray(image.GetOrigin(), dtype=float)))
    array = sitk.GetArrayViewFromImage(image)
    if array.dtype == np.int64 or array.dtype == np.uint64:
        array = array.astype(np.int32)
    slicer.util.updateVolumeFromArray(volume_node, array)


def same_grid(image: sitk.Image, volume_node, tolerance_mm: float = 1e-3) -> bool:
    """True when `image` lies on the volume node's voxel grid (size, spacing, origin, direction)."""
    dims = volume_node.GetImageData().GetDimensions() if volume_node.GetImageData() else None
    if dims is None or tuple(image.GetSize()) != tuple(dims):
        return False
    origin, spacing, direction = volume_geometry_lps(volume_node)
    return (np.allclose(image.GetSpacing(), spacing, rtol=1e-5, atol=0)
            and np.allclose(image.GetOrigin(), origin, rtol=0, atol=tolerance_mm)
            and np.allclose(image.GetDirection(), direction, rtol=0, atol=1e-5))


def _voxel_buffer(volume_node, shape_zyx: Sequence[int], dtype, reference_node) -> np.ndarray:
    """A writable (k, j, i) view of `volume_node`'s voxels with the reference's exact IJK-to-RAS.

    Re-uses the node's existing voxel memory when size and type already match (re-runs), so large
    results are written once, in place. Call `_voxels_modified` after filling it.
    """
    matrix = vtk.vtkMatrix4x4()
    reference_node.GetIJKToRASMatrix(matrix)
    volume_node.SetIJKToRASMatrix(matrix)
    vtk_type = numpy_support.get_vtk_array_type(np.dtype(dtype))
    dims = (int(shape_zyx[2]), int(shape_zyx[1]), int(shape_zyx[0]))
    image = volume_node.GetImageData()
    if image is None:
        image = vtk.vtkImageData()
        volume_node.SetAndObserveImageData(image)
    scalars = image.GetPointData().GetScalars()
    if (image.GetDimensions() != dims or scalars is None or scalars.GetDataType() != vtk_type
            or scalars.GetNumberOfComponents() != 1):
        image.SetDimensions(dims)
        image.AllocateScalars(vtk_type, 1)
    return _array_view(volume_node)


def _voxels_modified(volume_node) -> None:
    """The notifications Slicer sends when a volume's voxels change (as slicer.util does)."""
    image = volume_node.GetImageData()
    image.GetPointData().GetScalars().Modified()
    image.Modified()
    volume_node.StorableModified()
    volume_node.Modified()
    volume_node.InvokeEvent(slicer.vtkMRMLVolumeNode.ImageDataModifiedEvent, volume_node)


def _set_voxels(volume_node, array_zyx: np.ndarray, reference_node) -> None:
    """Give `volume_node` the reference's exact IJK-to-RAS and a copy of `array_zyx`."""
    buffer = _voxel_buffer(volume_node, array_zyx.shape, array_zyx.dtype, reference_node)
    buffer[...] = array_zyx
    _voxels_modified(volume_node)


def ct_warnings(image: sitk.Image, name: str) -> list[str]:
    """Plausibility problems of a CT (not Hounsfield units? odd spacing?), one line each naming it."""
    from ..files.reading import check_ct_like

    return check_ct_like(image, name)


def world_to_volume_ras(volume_node, point_world: Sequence[float]) -> tuple[float, float, float]:
    """A world (scene) RAS point in the volume's own RAS space (differs under a parent transform)."""
    point = [float(v) for v in point_world]
    transform_node = volume_node.GetParentTransformNode()
    if transform_node is None:
        return tuple(point)  # type: ignore[return-value]
    world_to_local = vtk.vtkGeneralTransform()
    transform_node.GetTransformFromWorld(world_to_local)
    return tuple(float(v) for v in world_to_local.TransformPoint(point))  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------
# Results, from a background job or in process
# ----------------------------------------------------------------------------------------------

@dataclass
class SegmentationOutput:
    """What a run produced, on the input CT's grid."""

    labelmap: sitk.Image                         # uint8
    attention: dict[str, sitk.Image]             # gate name -> float32 0..1
    labels: list[dict[str, Any]]                 # {"value", "name", "color" (0..1), "terminology"}
    summary: dict[str, Any] = field(default_factory=dict)


def _default_labels() -> list[dict[str, Any]]:
    from ..core.labels import PANCREAS

    return [PANCREAS.to_dict()]


def load_output_files(work_dir: os.PathLike | str) -> SegmentationOutput:
    """Read what `segment` wrote into a job folder (labels, attention_<gate>.nrrd, summary)."""
    folder = Path(work_dir)
    summary: dict[str, Any] = {}
    if (folder / SUMMARY_FILE).exists():
        summary = json.loads((folder / SUMMARY_FILE).read_text())
    labelmap = sitk.ReadImage(str(folder / LABELS_FILE))
    if labelmap.GetPixelID() != sitk.sitkUInt8:
        labelmap = sitk.Cast(labelmap, sitk.sitkUInt8)
    attention: dict[str, sitk.Image] = {}
    attention_dir = folder / ATTENTION_DIR
    gates = summary.get("gates") or sorted(
        p.name[len("attention_"):].split(".")[0] for p in attention_dir.glob("attention_*"))
    for gate in gates:
        matches = sorted(attention_dir.glob(f"attention_{gate}.*"))
        if matches:
            image = sitk.ReadImage(str(matches[0]))
            attention[gate] = image if image.GetPixelID() == sitk.sitkFloat32 else sitk.Cast(image, sitk.sitkFloat32)
    return SegmentationOutput(labelmap, attention, summary.get("labels") or _default_labels(), summary)


def run_segmentation_in_process(image: sitk.Image, model_path: Optional[os.PathLike | str] = None,
                                device: str = "auto", overlap: float = 0.5,
                                point_ras: Optional[Sequence[float]] = None,
                                progress: Optional[Callable[[float, str], None]] = None,
                                cancel: Optional[Callable[[], bool]] = None) -> SegmentationOutput:
    """The same computation as `SegmentationJob`, synchronously in this process (imports torch).

    For scripts, benchmarks and tests; the GUI uses the background job so Slicer stays usable.
    """
    from ..core.pipeline import SegmentationOptions, segment_image
    from ..files.modelfile import default_model_path, load_model

    path = Path(model_path) if model_path else default_model_path()
    model, spec = load_model(path, device="cpu")
    options = SegmentationOptions(overlap=overlap, device=device, attention=True,
                                  point_ras=tuple(point_ras) if point_ras is not None else None)
    result = segment_image(image, model, spec, options, progress=progress, cancel=cancel)
    summary = {
        "labels": [label.to_dict() for label in result.labels],
        "volume_ml": result.volume_ml(),
        "seconds": dict(result.seconds),
        "device": result.inference.device,
        "precision": result.inference.precision,
        "gates": sorted(result.attention),
        "model": {"path": str(path), "architecture": spec.architecture, "description": spec.description},
    }
    return SegmentationOutput(result.labelmap, dict(result.attention), summary["labels"], summary)


# ----------------------------------------------------------------------------------------------
# Background job: the `segment` command in its own process
# ----------------------------------------------------------------------------------------------

IDLE, RUNNING, SUCCEEDED, FAILED, CANCELLED = "idle", "running", "succeeded", "failed", "cancelled"


@dataclass
class JobStatus:
    state: str
    fraction: float
    message: str
    error: str = ""          # one line for the user when state == FAILED
    elapsed_s: float = 0.0


def lib_parent_dir() -> str:
    """The folder that contains the AttentionUNetSegmentLib package (goes on PYTHONPATH)."""
    return str(Path(__file__).resolve().parents[2])  # slicer/scene.py -> Lib -> its parent


def default_python_executable() -> str:
    """Inside Slicer: PythonSlicer (Slicer's Python with its environment); elsewhere this Python."""
    if hasattr(slicer, "app"):
        found = shutil.which("PythonSlicer")
        if found:
            return found
    return sys.executable


def describe_failure(returncode: Optional[int], stderr_lines: Sequence[str]) -> str:
    """One line for the user from a failed `segment` process."""
    text = "\n".join(stderr_lines)
    lowered = text.lower()
    if "no module named 'torch'" in lowered or 'no module named "torch"' in lowered:
        return ("PyTorch is not installed in Slicer's Python: press Segment again and accept the "
                "installation, or install the PyTorch extension")
    if "out of memory" in lowered and ("cuda" in lowered or "gpu" in lowered or "mps" in lowered):
        return ("the GPU ran out of memory: choose CPU as device, or a lower quality (overlap), "
                "or close other programs using the GPU")
    if "cuda" in lowered and ("not available" in lowered or "no cuda gpus" in lowered or
                              "not compiled with cuda" in lowered):
        return "no usable CUDA GPU was found: choose CPU (or Auto) as device"
    # The command prints errors a user can fix as one line "error: <file>: <problem>".
    for line in reversed(stderr_lines):
        stripped = line.strip()
        if stripped.startswith("error:") and "unexpected failure" not in stripped:
            return stripped[len("error:"):].strip()
    for line in reversed(stderr_lines):
        stripped = line.strip()
        if stripped and not stripped.startswith(("{", "File ", "^", "~")) and not stripped.startswith("error:"):
            return f"segmentation failed: {stripped}"
    if returncode is not None and returncode < 0:
        return (f"the segmentation process stopped unexpectedly (signal {-returncode}); "
                "the computer may have run out of memory")
    return f"the segmentation process failed (exit code {returncode})"


class SegmentationJob:
    """Runs `python -m AttentionUNetSegmentLib segment ...` in a background process.

    Thread-free for the caller: `start()` returns at once, `poll()` reports state, fraction and
    message (read from the process's JSON progress lines by a reader thread), `cancel()` stops
    the process (terminate, then kill after `kill_after_s`) and deletes the work folder,
    `result()` gives the `SegmentationOutput` (already read from disk by the reader thread).
    No Qt: the module polls with a QTimer, tests and scripts with `wait()`.
    """

    def __init__(self, image: sitk.Image, model_path: Optional[os.PathLike | str] = None,
                 device: str = "auto", overlap: float = 0.5,
                 point_ras: Optional[Sequence[float]] = None,
                 python_executable: Optional[str] = None, work_root: Optional[str] = None,
                 extra_args: Sequence[str] = (), env: Optional[dict[str, str]] = None,
                 kill_after_s: float = 1.0):
        self.image = image
        self.model_path = str(model_path) if model_path else None
        self.device = device
        self.overlap = float(overlap)
        self.point_ras = tuple(float(v) for v in point_ras) if point_ras is not None else None
        self.python_executable = python_executable or default_python_executable()
        self.work_root = work_root
        self.extra_args = list(extra_args)
        self.env = env
        self.kill_after_s = kill_after_s
        self.work_dir: Optional[Path] = None
        self.log_lines: deque[str] = deque(maxlen=400)
        self._lock = threading.Lock()
        self._state = IDLE
        self._fraction = 0.0
        self._message = ""
        self._error = ""
        self._output: Optional[SegmentationOutput] = None
        self._process: Optional[subprocess.Popen] = None
        self._thread: Optional[threading.Thread] = None
        self._cancel_requested = False
        self._started_at = 0.0
        self._finished_at: Optional[float] = None

    # -- command ---------------------------------------------------------------------------
    def command(self) -> list[str]:
        """The command line (paths inside `work_dir`)."""
        folder = self.work_dir or Path("WORK")
        args = [self.python_executable, "-m", "AttentionUNetSegmentLib", "segment",
                str(folder / INPUT_FILE), "-o", str(folder / LABELS_FILE),
                "--attention-dir", str(folder / ATTENTION_DIR), "--attention-format", "nrrd",
                "--device", self.device, f"--overlap={self.overlap:g}",
                "--progress", "json", "--summary-json", str(folder / SUMMARY_FILE)]
        if self.model_path:
            args += ["--model", self.model_path]
        if self.point_ras is not None:
            # "--point=..." so that a negative first coordinate is not taken for an option.
            args.append("--point=" + ",".join(f"{v:.6g}" for v in self.point_ras))
        return args + self.extra_args

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ if self.env is None else self.env)
        paths = [lib_parent_dir()] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        env["PYTHONUNBUFFERED"] = "1"
        return env

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "SegmentationJob":
        if self._state != IDLE:
            raise RuntimeError("a job can be started once")
        self.work_dir = Path(tempfile.mkdtemp(prefix="AttentionUNetSegment-", dir=self.work_root))
        self._started_at = time.perf_counter()
        with self._lock:
            self._state = RUNNING
            self._message = "Starting (loading PyTorch and the model)"
        self._thread = threading.Thread(target=self._run, name="AttentionUNetSegmentJob", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            assert self.work_dir is not None
            sitk.WriteImage(self.image, str(self.work_dir / INPUT_FILE), useCompression=False)
            popen_kwargs: dict[str, Any] = {}
            if os.name == "nt":
                popen_kwargs["creationflags"] = getattr(subprocess, "CREATE_NO_WINDOW", 0) | \
                    getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
            else:
                popen_kwargs["start_new_session"] = True  # its own process group: cancel reaches children
            with self._lock:
                if self._cancel_requested:
                    return
                self._process = subprocess.Popen(
                    self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace", bufsize=1,
                    cwd=str(self.work_dir), env=self._environment(), **popen_kwargs)
            process = self._process
            assert process.stderr is not None
            for line in process.stderr:
                self._handle_line(line.rstrip("\n"))
            returncode = process.wait()
            if self._cancel_requested:
                return
            if returncode != 0:
                self._finish(FAILED, error=describe_failure(returncode, list(self.log_lines)))
                return
            with self._lock:
                self._message = "Reading results"
            output = load_output_files(self.work_dir)
            with self._lock:
                self._output = output
            self._finish(SUCCEEDED, message="Done")
        except Exception as error:  # noqa: BLE001 - any failure becomes a message, never a hang
            if not self._cancel_requested:
                logger.exception("segmentation job failed")
                self._finish(FAILED, error=f"segmentation failed: {error}")

    def _handle_line(self, line: str) -> None:
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if isinstance(record, dict) and "fraction" in record:
                with self._lock:
                    self._fraction = min(max(float(record.get("fraction", 0.0)), 0.0), 1.0)
                    self._message = str(record.get("message", ""))
                return
        if line.strip():
            self.log_lines.append(line)
            logger.info("segment: %s", line)

    def _finish(self, state: str, message: str = "", error: str = "") -> None:
        with self._lock:
            if self._state != RUNNING:
                return
            self._state = state
            self._finished_at = time.perf_counter()
            if message:
                self._message = message
            if state == SUCCEEDED:
                self._fraction = 1.0
            self._error = error

    def poll(self) -> JobStatus:
        with self._lock:
            end = self._finished_at if self._finished_at is not None else time.perf_counter()
            elapsed = end - self._started_at if self._started_at else 0.0
            return JobStatus(self._state, self._fraction, self._message, self._error, elapsed)

    @property
    def process(self) -> Optional[subprocess.Popen]:
        """The `segment` process once started (None before)."""
        return self._process

    @property
    def running(self) -> bool:
        return self.poll().state == RUNNING

    def wait(self, timeout: Optional[float] = None, interval: float = 0.05) -> JobStatus:
        """Block until the job ends (for scripts and tests; the GUI polls instead)."""
        deadline = None if timeout is None else time.perf_counter() + timeout
        while True:
            status = self.poll()
            if status.state != RUNNING:
                return status
            if deadline is not None and time.perf_counter() > deadline:
                return status
            time.sleep(interval)

    def cancel(self) -> None:
        """Stop the process within about `kill_after_s` seconds and delete the work folder."""
        with self._lock:
            self._cancel_requested = True
            process = self._process
            if self._state == RUNNING:
                self._state = CANCELLED
                self._message = "Cancelled"
                self._finished_at = time.perf_counter()
        if process is not None and process.poll() is None:
            _signal_process(process, kill=False)
            try:
                process.wait(timeout=self.kill_after_s)
            except subprocess.TimeoutExpired:
                _signal_process(process, kill=True)
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    logger.warning("segmentation process %s did not stop", process.pid)
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self.cleanup()

    def result(self) -> SegmentationOutput:
        status = self.poll()
        if status.state != SUCCEEDED or self._output is None:
            raise RuntimeError(f"no result: the job is {status.state}" + (f" ({status.error})" if status.error else ""))
        return self._output

    def cleanup(self) -> None:
        """Delete the work folder (input copy and result files); results already read stay in memory."""
        if self.work_dir is not None:
            shutil.rmtree(self.work_dir, ignore_errors=True)


def _signal_process(process: subprocess.Popen, kill: bool) -> None:
    try:
        if os.name == "nt":
            process.kill() if kill else process.terminate()
        else:
            os.killpg(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
    except (ProcessLookupError, PermissionError, OSError):
        pass


# ----------------------------------------------------------------------------------------------
# Devices and PyTorch, asked of the Python that will run the job (no torch import in Slicer)
# ----------------------------------------------------------------------------------------------

_PROBE_CODE = """
import json
try:
    import torch
except Exception as error:
    print(json.dumps({"torch": None, "error": str(error)}))
else:
    cuda = []
    if torch.cuda.is_available():
        cuda = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    print(json.dumps({"torch": torch.__version__, "cuda": cuda,
                      "mps": bool(mps is not None and mps.is_available())}))
"""


class DeviceProbe:
    """Asks a Python process which PyTorch and GPUs it has, without blocking: start(), then poll()."""

    def __init__(self, python_executable: Optional[str] = None):
        self.python_executable = python_executable or default_python_executable()
        self._process: Optional[subprocess.Popen] = None
        self.result: Optional[dict[str, Any]] = None

    def start(self) -> "DeviceProbe":
        self._process = subprocess.Popen([self.python_executable, "-c", _PROBE_CODE],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, text=True)
        return self

    def poll(self) -> Optional[dict[str, Any]]:
        """None while running; then {"torch": version or None, "cuda": [names], "mps": bool}."""
        if self.result is None and self._process is not None and self._process.poll() is not None:
            out = self._process.stdout.read() if self._process.stdout else ""
            try:
                self.result = json.loads(out.strip().splitlines()[-1])
            except (ValueError, IndexError):
                self.result = {"torch": None, "cuda": [], "mps": False, "error": "probe failed"}
        return self.result


def pip_constraints_for_shipped_packages(names: Sequence[str] = ("numpy", "SimpleITK")) -> str:
    """pip constraints (`name==version`) pinning packages Slicer ships, so installing torch never
    replaces them."""
    from importlib import metadata

    lines = []
    for name in names:
        try:
            lines.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# Scene
# ----------------------------------------------------------------------------------------------

@dataclass
class AppliedResult:
    segmentation_node: Any
    overlay_nodes: dict[str, Any]        # gate name (and MAX_GATE) -> vtkMRMLScalarVolumeNode
    volume_ml: dict[str, float]          # segment name -> mL
    summary: dict[str, Any]


def _color_0_1(color: Sequence[float]) -> tuple[float, float, float]:
    values = [float(c) for c in color]
    if any(c > 1.0 for c in values):
        values = [c / 255.0 for c in values]
    return tuple(values)  # type: ignore[return-value]


def _collection_items(collection) -> list:
    return [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]


class AttentionUNetSegmentSceneLogic:
    """Builds and updates the result nodes of one CT in a MRML scene.

    `scene` defaults to `slicer.mrmlScene`, `segmentations_logic` to
    `slicer.modules.segmentations.logic()` (both only exist inside Slicer; tests pass their own).
    """

    def __init__(self, scene=None, segmentations_logic=None):
        self._scene = scene
        self._segmentations_logic = segmentations_logic

    @property
    def scene(self):
        return self._scene if self._scene is not None else slicer.mrmlScene

    @property
    def segmentations_logic(self):
        if self._segmentations_logic is None:
            self._segmentations_logic = slicer.modules.segmentations.logic()
        return self._segmentations_logic

    # -- jobs ------------------------------------------------------------------------------------
    def create_job(self, volume_node, model_path=None, device="auto", overlap=0.5,
                   point_world_ras: Optional[Sequence[float]] = None, **job_kwargs) -> SegmentationJob:
        """A (not yet started) background job for `volume_node`; `point_world_ras` for click-to-segment."""
        image = volume_node_to_image(volume_node)
        point = world_to_volume_ras(volume_node, point_world_ras) if point_world_ras is not None else None
        return SegmentationJob(image, model_path=model_path, device=device, overlap=overlap,
                               point_ras=point, **job_kwargs)

    # -- nodes of a CT --------------------------------------------------------------------------
    def segmentation_node_for(self, volume_node):
        return volume_node.GetNodeReference(SEGMENTATION_ROLE) if volume_node is not None else None

    def overlay_nodes_for(self, volume_node) -> dict[str, Any]:
        nodes: dict[str, Any] = {}
        if volume_node is None:
            return nodes
        for index in range(volume_node.GetNumberOfNodeReferenceRoles()):
            role = volume_node.GetNthNodeReferenceRole(index)
            if role.startswith(OVERLAY_ROLE_PREFIX):
                node = volume_node.GetNodeReference(role)
                if node is not None:
                    nodes[role[len(OVERLAY_ROLE_PREFIX):]] = node
        return nodes

    def gate_choices(self, volume_node) -> list[str]:
        """Overlays available for the CT: MAX_GATE first, then the gates in order."""
        names = self.overlay_nodes_for(volume_node)
        gates = sorted(n for n in names if n != MAX_GATE)
        return ([MAX_GATE] if MAX_GATE in names else []) + gates

    def attention_color_node(self):
        """The shared inferno colour table node (created once per scene)."""
        for node in _collection_items(self.scene.GetNodesByClass("vtkMRMLColorTableNode")):
            if node.GetAttribute(COLOR_TABLE_ATTRIBUTE) == "inferno":
                return node
        node = self.scene.AddNewNodeByClass("vtkMRMLColorTableNode", COLOR_TABLE_NAME)
        node.SetTypeToUser()
        node.SetAttribute(COLOR_TABLE_ATTRIBUTE, "inferno")
        table = attention_color_table()
        node.SetNumberOfColors(len(table))
        for index, (r, g, b, a) in enumerate(table):
            node.SetColor(index, f"attention{index / 255:.3f}", r / 255.0, g / 255.0, b / 255.0, a / 255.0)
        node.SetDescription("Attention coefficients 0..1 (inferno; low values transparent)")
        return node

    # -- applying a result ------------------------------------------------------------------------
    def apply_result(self, volume_node, output: SegmentationOutput, segmentation_node=None,
                     show: bool = True, gate: str = MAX_GATE, opacity: float = DEFAULT_OPACITY) -> AppliedResult:
        """Put `output` into the scene as one batch: segmentation + overlay nodes of `volume_node`.

        Re-uses the nodes of a previous run (found through node references on the CT, or the given
        `segmentation_node`), so re-runs never duplicate nodes. Raises InputError, before touching
        the scene, if the output does not lie on the CT's grid.
        """
        check_input_volume(volume_node)
        if volume_node.GetScene() is not self.scene:
            raise InputError(volume_node.GetName(), "was removed from the scene during the run; nothing was added")
        if not same_grid(output.labelmap, volume_node):
            raise InputError(volume_node.GetName(), "the segmentation result does not lie on this volume's "
                                                    "grid (was the volume changed during the run?)")
        for name, image in output.attention.items():
            if not same_grid(image, volume_node):
                raise InputError(volume_node.GetName(), f"attention map {name} does not lie on this volume's grid")
        scene = self.scene
        labels = list(output.labels) or _default_labels()
        labels_zyx = sitk.GetArrayViewFromImage(output.labelmap)
        spacing = volume_node.GetSpacing()
        voxel_ml = float(spacing[0] * spacing[1] * spacing[2]) / 1000.0
        counts = np.bincount(labels_zyx.ravel(), minlength=256)
        volume_ml = {str(label["name"]): float(counts[int(label["value"])]) * voxel_ml for label in labels}

        scene.StartState(scene.BatchProcessState)
        try:
            segmentation_node = self._update_segmentation(volume_node, labels_zyx, labels, segmentation_node)
            overlay_nodes = self._update_overlays(volume_node, output.attention)
        finally:
            scene.EndState(scene.BatchProcessState)
        # Outside the batch: Slicer's subject hierarchy plugins create items for new nodes on add.
        self._place_in_subject_hierarchy(volume_node, segmentation_node, overlay_nodes)
        if show:
            self._show_segmentation(segmentation_node)
            if overlay_nodes:
                self.show_overlay(volume_node, gate if gate in overlay_nodes or gate == NO_OVERLAY else MAX_GATE,
                                  opacity)
        return AppliedResult(segmentation_node, overlay_nodes, volume_ml, dict(output.summary))

    def _update_segmentation(self, volume_node, labels_zyx: np.ndarray, labels: list[dict], segmentation_node):
        scene = self.scene
        if segmentation_node is None or segmentation_node.GetScene() is not scene:
            segmentation_node = self.segmentation_node_for(volume_node)
        if segmentation_node is None:
            segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode",
                                                        f"{volume_node.GetName()} pancreas")
        segmentation_node.SetAttribute(MODULE_ATTRIBUTE, "segmentation")
        volume_node.SetNodeReferenceID(SEGMENTATION_ROLE, segmentation_node.GetID())
        if segmentation_node.GetDisplayNode() is None:
            segmentation_node.CreateDefaultDisplayNodes()
        segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
        segmentation_node.SetAndObserveTransformNodeID(volume_node.GetTransformNodeID())

        # Label values -> 1..N in the order of `labels`, imported into segments with fixed IDs, so
        # a re-run replaces the content of the same segments (display settings survive).
        lut = np.zeros(256, dtype=np.uint8)
        segment_ids = vtk.vtkStringArray()
        for index, label in enumerate(labels):
            lut[int(label["value"])] = index + 1
            segment_ids.InsertNextValue(str(label["name"]))
        labelmap_node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "AttentionUNetSegment temporary")
        try:
            _set_voxels(labelmap_node, lut[labels_zyx], volume_node)
            labelmap_node.SetAndObserveTransformNodeID(volume_node.GetTransformNodeID())
            segmentation = segmentation_node.GetSegmentation()
            for index in range(segment_ids.GetNumberOfValues()):
                segment_id = segment_ids.GetValue(index)
                if segmentation.GetSegment(segment_id) is None:
                    segmentation.AddEmptySegment(segment_id, segment_id)
            if not self.segmentations_logic.ImportLabelmapToSegmentationNode(labelmap_node, segmentation_node,
                                                                            segment_ids):
                raise RuntimeError("importing the labelmap into the segmentation failed")
        finally:
            scene.RemoveNode(labelmap_node)

        tag = slicer.vtkSegment.GetTerminologyEntryTagName()
        for label in labels:
            segment = segmentation.GetSegment(str(label["name"]))
            segment.SetName(str(label["name"]))
            segment.SetNameAutoGenerated(False)
            segment.SetColor(*_color_0_1(label["color"]))
            segment.SetColorAutoGenerated(False)
            if label.get("terminology"):
                segment.SetTag(tag, str(label["terminology"]))
        return segmentation_node

    def _update_overlays(self, volume_node, attention: dict[str, sitk.Image]) -> dict[str, Any]:
        scene = self.scene
        existing = self.overlay_nodes_for(volume_node)
        arrays = {name: sitk.GetArrayViewFromImage(image) for name, image in sorted(attention.items())}
        color_node = self.attention_color_node() if arrays else None
        nodes: dict[str, Any] = {}
        for name in list(arrays) + ([MAX_GATE] if arrays else []):
            node = existing.pop(name, None)
            if node is None:
                title = "attention max over gates" if name == MAX_GATE else f"attention {name}"
                node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", f"{volume_node.GetName()} {title}")
                volume_node.SetNodeReferenceID(OVERLAY_ROLE_PREFIX + name, node.GetID())
            node.SetAttribute(GATE_ATTRIBUTE, name)
            node.SetAttribute(MODULE_ATTRIBUTE, "attention")
            # Display first: with a fixed 0..1 window Slicer computes no histogram of the voxels.
            self._configure_overlay_display(node, color_node)
            shape = next(iter(arrays.values())).shape
            buffer = _voxel_buffer(node, shape, np.float32, volume_node)
            if name == MAX_GATE:   # computed in place in the node's own memory: no temporary copies
                gates = list(arrays.values())
                buffer[...] = gates[0]
                for other in gates[1:]:
                    np.maximum(buffer, other, out=buffer)
            else:
                buffer[...] = arrays[name]
            _voxels_modified(node)
            node.SetAndObserveTransformNodeID(volume_node.GetTransformNodeID())
            nodes[name] = node
        for name, stale in existing.items():  # gates of an earlier model that this one lacks
            volume_node.RemoveNodeReferenceIDs(OVERLAY_ROLE_PREFIX + name)
            scene.RemoveNode(stale)
        return nodes

    def _configure_overlay_display(self, node, color_node) -> None:
        display = node.GetDisplayNode()
        if display is None:
            display = self.scene.AddNewNodeByClass("vtkMRMLScalarVolumeDisplayNode")
            node.SetAndObserveDisplayNodeID(display.GetID())
        was_modifying = display.StartModify()
        display.SetAndObserveColorNodeID(color_node.GetID())
        display.AutoWindowLevelOff()
        display.SetWindowLevelMinMax(0.0, 1.0)
        display.AutoThresholdOff()
        display.SetLowerThreshold(OVERLAY_LOWER_THRESHOLD)
        display.SetUpperThreshold(1.0e6)
        display.ApplyThresholdOn()
        display.SetInterpolate(1)
        display.EndModify(was_modifying)

    def _place_in_subject_hierarchy(self, volume_node, segmentation_node, overlay_nodes: dict[str, Any]) -> None:
        """Segmentation next to the CT; overlays in a folder "<CT> attention maps" next to it."""
        sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(self.scene)
        if sh is None:
            return
        ct_item = sh.GetItemByDataNode(volume_node)
        if not ct_item:
            return  # the CT is not in the hierarchy (scripts, headless): nothing to be next to
        parent = sh.GetItemParent(ct_item)

        def put(node, parent_item):
            item = sh.GetItemByDataNode(node)
            if item:
                if sh.GetItemParent(item) != parent_item:
                    sh.SetItemParent(item, parent_item)
            else:
                sh.CreateItem(parent_item, node)

        put(segmentation_node, parent)
        if overlay_nodes:
            folder_name = f"{volume_node.GetName()} attention maps"
            folder = sh.GetItemChildWithName(parent, folder_name)
            if not folder:
                folder = sh.CreateFolderItem(parent, folder_name)
            for name in [MAX_GATE] + sorted(n for n in overlay_nodes if n != MAX_GATE):
                if name in overlay_nodes:
                    put(overlay_nodes[name], folder)

    def _show_segmentation(self, segmentation_node) -> None:
        display = segmentation_node.GetDisplayNode()
        if display is not None:
            display.SetVisibility(True)
            display.SetVisibility2DFill(True)
            display.SetVisibility2DOutline(True)
        # The 3D surface, as the "Show 3D" button does; needs the surface converters (registered
        # by the segmentations logic) and is skipped where they are missing.
        try:
            segmentation_node.CreateClosedSurfaceRepresentation()
        except Exception:  # noqa: BLE001
            logger.warning("could not create the 3D surface of %s", segmentation_node.GetName())

    # -- overlays in the slice views ------------------------------------------------------------
    def slice_composite_nodes(self) -> list:
        return _collection_items(self.scene.GetNodesByClass("vtkMRMLSliceCompositeNode"))

    def show_overlay(self, volume_node, gate: str = MAX_GATE, opacity: float = DEFAULT_OPACITY) -> Optional[Any]:
        """Show one attention map (a gate name, MAX_GATE, or NO_OVERLAY) over the CT in every slice
        view, at `opacity`. Only display settings change: instant, no re-run. Returns the node shown."""
        overlays = self.overlay_nodes_for(volume_node)
        shown = None if gate == NO_OVERLAY else overlays.get(gate)
        if gate != NO_OVERLAY and shown is None:
            raise KeyError(f"no attention map '{gate}' for {volume_node.GetName()}; have {sorted(overlays)}")
        our_ids = {node.GetID() for node in overlays.values()}
        for composite in self.slice_composite_nodes():
            was_modifying = composite.StartModify()
            if shown is not None:
                composite.SetBackgroundVolumeID(volume_node.GetID())
                composite.SetForegroundVolumeID(shown.GetID())
                composite.SetForegroundOpacity(float(opacity))
            elif composite.GetForegroundVolumeID() in our_ids:
                composite.SetForegroundVolumeID(None)
            composite.EndModify(was_modifying)
        return shown

    def set_overlay_opacity(self, volume_node, opacity: float) -> None:
        """Change the opacity of our overlay in every slice view that shows one of them."""
        our_ids = {node.GetID() for node in self.overlay_nodes_for(volume_node).values()}
        for composite in self.slice_composite_nodes():
            if composite.GetForegroundVolumeID() in our_ids:
                composite.SetForegroundOpacity(float(opacity))

    def shown_gate(self, volume_node) -> str:
        """The overlay currently shown in the first slice view showing one (NO_OVERLAY if none)."""
        by_id = {node.GetID(): name for name, node in self.overlay_nodes_for(volume_node).items()}
        for composite in self.slice_composite_nodes():
            if composite.GetForegroundVolumeID() in by_id:
                return by_id[composite.GetForegroundVolumeID()]
        return NO_OVERLAY


def slice_view_rgba(slice_logic) -> Optional[np.ndarray]:
    """What a slice view shows of its volume layers (background, foreground with its opacity and
    per-voxel alpha, label layer), blended by Slicer's own reslice-and-blend pipeline, as an
    (H, W, 4) uint8 array with row 0 at the top. None when the view shows nothing.

    Works without a render window (headless), e.g. for pictures and tests; segmentations, markups
    and annotations are drawn by displayable managers and are not part of it.
    """
    connection = slice_logic.GetImageDataConnection()
    if connection is None:
        return None
    producer = connection.GetProducer()
    producer.Update()
    image = producer.GetOutputDataObject(connection.GetIndex())
    if image is None or image.GetPointData().GetScalars() is None:
        return None
    width, height, _ = image.GetDimensions()
    pixels = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    return np.ascontiguousarray(pixels.reshape(height, width, -1)[::-1])
