"""The `segment` command in a background process: start, poll, cancel; no Qt, no torch here.

    SimpleITK image --write--> work folder/input.nrrd
      --Popen--> python -m AttentionUNetSegmentLib segment ... (service.contract: flags, files,
                 JSON progress lines on stderr, summary, exit codes)
      --reader thread--> progress under a lock; other lines queued
      --poll() (the GUI's QTimer)--> state, fraction, message; queued lines logged here
      --load_output_files--> SegmentationOutput

The reader thread never calls `logging`: inside Slicer the Python log handler posts to Qt's error
log model, which must only be touched from the GUI thread. Lines are queued and written by
`poll()`, on whichever thread polls. Cancel stops the whole process tree (see processes.py)
without blocking the thread that calls it (the GUI's): it returns at once, and a stopper thread
kills, waits and deletes the work folder; a folder it cannot delete is marked and removed when
the next job starts.
"""

from __future__ import annotations

import logging
import queue
import shutil
import subprocess
import tempfile
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from ..core.options import DEFAULT_OVERLAP
from ..service.contract import ENGINE_MODULE, INPUT_FILE, JobSettings, read_progress_line, segment_arguments
from . import processes
from .failures import describe_failure
from .results import SegmentationOutput, load_output_files

if TYPE_CHECKING:  # SimpleITK is imported when a job runs, not when Slicer loads the module
    import SimpleITK as sitk

logger = logging.getLogger(__name__)

IDLE, RUNNING, SUCCEEDED, FAILED, CANCELLED = "idle", "running", "succeeded", "failed", "cancelled"
WORK_DIR_PREFIX = "AttentionUNetSegment-"
#: A file in a work folder that a cancelled or finished job could not delete: the next start does.
ABANDONED_MARK = "ABANDONED"
#: How long the stopper thread keeps trying to delete a work folder (a virus scanner or an indexer
#: may still hold a file for a moment on Windows).
DELETE_RETRIES, DELETE_RETRY_S = 10, 0.5
#: How long a cancel waits for the reader thread (still writing the input, or reading the pipe of a
#: process that outlived its group) before it leaves the folder to the next start.
READER_END_S = 600.0


def _delete_work_dir(folder: Optional[Path], retries: int = 1, retry_s: float = 0.0) -> bool:
    """Delete a work folder; True when it is gone. If it cannot be deleted, mark it abandoned so
    that `remove_abandoned_work_dirs` removes it at the next start."""
    if folder is None:
        return True
    for attempt in range(retries):
        try:
            shutil.rmtree(folder)
        except FileNotFoundError:
            pass
        except OSError:
            if attempt + 1 < retries:
                time.sleep(retry_s)
                continue
        if not folder.exists():
            return True
    if not folder.exists():
        return True
    try:  # (no log line here: this runs on the stopper thread too, and only the GUI thread may log)
        (folder / ABANDONED_MARK).touch()
    except OSError:
        pass
    return False


def remove_abandoned_work_dirs(work_root: Optional[str]) -> None:
    """Delete the work folders earlier jobs marked abandoned (only those: another Slicer may be
    running a job in a folder of its own)."""
    root = Path(work_root or tempfile.gettempdir())
    try:
        candidates = [p for p in root.glob(WORK_DIR_PREFIX + "*") if (p / ABANDONED_MARK).exists()]
    except OSError:
        return
    for folder in candidates:
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class JobStatus:
    state: str
    fraction: float
    message: str
    error: str = ""          # one line for the user when state == FAILED
    elapsed_s: float = 0.0


class SegmentationJob:
    """Runs `python -m AttentionUNetSegmentLib segment ...` in a background process.

    `start()` returns at once, `poll()` reports state, fraction and message, `cancel()` stops
    the process tree and deletes the work folder, `result()` gives the SegmentationOutput (read
    from disk by the reader thread). The module polls with a QTimer, scripts and tests with `wait()`.
    `python_executable` defaults to `processes.python_executable()` (PythonSlicer inside Slicer;
    raises PythonSlicerNotFound there when it is missing).
    """

    def __init__(self, image: sitk.Image, model_path=None, device: str = "auto", overlap: float = DEFAULT_OVERLAP,
                 point_ras: Optional[Sequence[float]] = None, python_executable: Optional[str] = None,
                 work_root: Optional[str] = None, extra_args: Sequence[str] = (),
                 env: Optional[dict[str, str]] = None, kill_after_s: float = 1.0):
        self.image = image
        self.settings = JobSettings(str(model_path) if model_path else None, device, overlap,
                                    None if point_ras is None else tuple(point_ras))
        self.python_executable = python_executable or processes.python_executable()
        self.work_root = work_root
        self.extra_args = list(extra_args)
        self.env = env
        self.kill_after_s = kill_after_s
        self.work_dir: Optional[Path] = None
        self.log_lines: deque[str] = deque(maxlen=400)
        self._pending_log: "queue.SimpleQueue[tuple[int, str]]" = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._state, self._fraction, self._message, self._error = IDLE, 0.0, "", ""
        self._output: Optional[SegmentationOutput] = None
        self._process: Optional[subprocess.Popen] = None
        self._thread: Optional[threading.Thread] = None
        self._cancel_requested = False
        self._stopped = threading.Event()   # set once a cancelled job's process and folder are gone
        self._started_at = 0.0
        self._finished_at: Optional[float] = None

    # -- command ---------------------------------------------------------------------------
    def command(self) -> list[str]:
        """The command line (paths inside `work_dir`; flags and files: service.contract)."""
        folder = self.work_dir or Path("WORK")
        return [self.python_executable, "-m", ENGINE_MODULE, "segment",
                *segment_arguments(folder, self.settings), *self.extra_args]

    def environment(self) -> dict[str, str]:
        return processes.child_environment(self.env, processes.lib_parent_dir())

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "SegmentationJob":
        if self._state != IDLE:
            raise RuntimeError("a job can be started once")
        remove_abandoned_work_dirs(self.work_root)
        self.work_dir = Path(tempfile.mkdtemp(prefix=WORK_DIR_PREFIX, dir=self.work_root))
        self._started_at = time.perf_counter()
        with self._lock:
            self._state = RUNNING
            self._message = "Starting (loading PyTorch and the model)"
        self._thread = threading.Thread(target=self._run, name="AttentionUNetSegmentJob", daemon=True)
        self._thread.start()
        return self

    def _launch(self) -> Optional[subprocess.Popen]:
        with self._lock:
            if self._cancel_requested:
                return None
            self._process = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace", bufsize=1,
                cwd=str(self.work_dir), env=self.environment(), **processes.hidden_window_options())
            return self._process

    def _run(self) -> None:
        """Reader thread: write the input, run the command, read its stderr, then the results."""
        try:
            import SimpleITK as sitk

            assert self.work_dir is not None
            sitk.WriteImage(self.image, str(self.work_dir / INPUT_FILE), useCompression=False)
            process = self._launch()
            if process is None:
                return
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
                self._pending_log.put((logging.ERROR, "segmentation job failed\n" + traceback.format_exc()))
                self._finish(FAILED, error=f"segmentation failed: {error}")

    def _handle_line(self, line: str) -> None:
        progress = read_progress_line(line)
        if progress is not None:
            with self._lock:
                self._fraction, self._message = progress
            return
        if line.strip():
            with self._lock:
                self.log_lines.append(line)
            self._pending_log.put((logging.INFO, "segment: " + line))

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

    def flush_log(self) -> None:
        """Write the lines the reader thread queued, on this (the polling) thread."""
        processes.write_queued_log(self._pending_log, logger)

    def poll(self) -> JobStatus:
        """State, fraction and message; also writes the queued log lines (call from the GUI thread)."""
        self.flush_log()
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
            if status.state != RUNNING or (deadline is not None and time.perf_counter() > deadline):
                return status
            time.sleep(interval)

    def cancel(self) -> None:
        """Stop the process tree and delete the work folder, without waiting: the GUI thread calls
        this. Returns at once; a stopper thread sends the kill after `kill_after_s`, waits for the
        process and the reader thread (which may still be writing a multi-GB input) and deletes
        the folder, retrying. `wait_stopped()` waits for it (scripts, tests)."""
        with self._lock:
            if self._cancel_requested:
                return
            self._cancel_requested = True
            process = self._process
            if self._state == RUNNING:
                self._state, self._message = CANCELLED, "Cancelled"
                self._finished_at = time.perf_counter()
        self.flush_log()
        processes.stop_tree_in_background(process, lambda level, text: self._pending_log.put((level, text)),
                                          self.kill_after_s, then=self._after_stop)

    def _after_stop(self) -> None:
        """The stopper thread of `cancel()`, once the process has ended."""
        try:
            if self._thread is not None:
                # The reader ends with the process, or once the input is written (a slow disk: minutes).
                self._thread.join(timeout=READER_END_S)
            if self._thread is not None and self._thread.is_alive():
                _delete_work_dir(self.work_dir, retries=0)  # still busy: marked for the next start
            else:
                _delete_work_dir(self.work_dir, DELETE_RETRIES, DELETE_RETRY_S)
        finally:
            self._stopped.set()

    def wait_stopped(self, timeout: Optional[float] = None) -> bool:
        """After `cancel()`: wait until the process has ended and the work folder is deleted."""
        return self._stopped.wait(timeout)

    def result(self) -> SegmentationOutput:
        status = self.poll()
        if status.state != SUCCEEDED or self._output is None:
            raise RuntimeError(f"no result: the job is {status.state}" + (f" ({status.error})" if status.error else ""))
        return self._output

    def cleanup(self) -> None:
        """Delete the work folder (input copy and result files); results already read stay in memory."""
        _delete_work_dir(self.work_dir)

