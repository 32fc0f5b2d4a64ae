"""The click worker seen from Slicer: start it once, open a CT, send lists of clicks, poll for
answers, read the newest result; no Qt, no torch here.

    ClickWorkerClient.start()  --Popen--> python -m AttentionUNetSegmentLib click-worker
    open(image) / send_clicks(clicks)  --sender thread (writes the CT or start segment, then
                                         the request line to stdin; never on the GUI thread)
    reader threads: stdout -> answers (queue), stderr -> progress and log lines
    poll() (the GUI's QTimer) -> the answers that came, log lines written on the polling thread
    result(answer) -> SegmentationOutput, read from the answer's result folder

The protocol is service.contract's. A click answers within about a second; the user may click
again before it does: every request names the whole list of clicks, so only the newest answer
matters (`newest_clicks_answer`). stop() ends the process tree and deletes the work folder.
"""

from __future__ import annotations

import logging
import queue
import shutil
import subprocess
import tempfile
import threading
from collections import deque
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ..service.contract import (
    CLICK_WORKER_COMMAND,
    CLICKS,
    ENGINE_MODULE,
    INPUT_FILE,
    OPEN,
    QUIT,
    clicks_payload,
    read_progress_line,
    read_response,
    request_line,
)
from . import processes


logger = logging.getLogger(__name__)

START_FILE = "start_segment.nrrd"


class ClickWorkerClient:
    """One worker process for the module's click mode (see the module docstring)."""

    def __init__(self, python_executable: Optional[str] = None, work_root: Optional[str] = None,
                 env: Optional[dict[str, str]] = None, kill_after_s: float = 1.0):
        self.python_executable = python_executable or processes.python_executable()
        self.work_root, self.env, self.kill_after_s = work_root, env, kill_after_s
        self.work_dir: Optional[Path] = None
        self.log_lines: deque[str] = deque(maxlen=400)
        self.progress: tuple[float, str] = (0.0, "")
        self._process: Optional[subprocess.Popen] = None
        self._outbox: "queue.SimpleQueue[Optional[tuple[Callable[[], None], str]]]" = queue.SimpleQueue()
        self._answers: "queue.SimpleQueue[dict[str, Any]]" = queue.SimpleQueue()
        self._pending_log: "queue.SimpleQueue[tuple[int, str]]" = queue.SimpleQueue()
        self._next_id = 0
        self._start_path: Optional[str] = None
        self._threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------------------
    def command(self) -> list[str]:
        return [self.python_executable, "-m", ENGINE_MODULE, CLICK_WORKER_COMMAND]

    def start(self) -> "ClickWorkerClient":
        self.work_dir = Path(tempfile.mkdtemp(prefix="AttentionUNetSegment-clicks-", dir=self.work_root))
        self._process = subprocess.Popen(
            self.command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, encoding="utf-8", errors="replace", bufsize=1, cwd=str(self.work_dir),
            env=processes.child_environment(self.env, processes.lib_parent_dir()),
            **processes.hidden_window_options())
        for target, name in ((self._send_loop, "send"), (self._read_answers, "answers"), (self._read_log, "log")):
            thread = threading.Thread(target=target, name=f"AttentionUNetSegmentClicks-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        """Ask the worker to quit, end its process tree if it does not, delete the work folder."""
        process, self._process = self._process, None
        self._outbox.put(None)
        if process is not None and process.poll() is None:
            try:
                process.stdin.write(request_line(-1, QUIT) + "\n")
                process.stdin.flush()
                process.wait(timeout=self.kill_after_s)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                processes.stop_process_tree(process, grace_s=self.kill_after_s)
        self.flush_log()
        if self.work_dir is not None:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    # -- requests ----------------------------------------------------------------------------
    def _request(self, op: str, prepare: Callable[[], None] = lambda: None, **fields: Any) -> int:
        self._next_id += 1
        self._outbox.put((prepare, request_line(self._next_id, op, **fields)))
        return self._next_id

    def open(self, image, model_path: Optional[str] = None, device: str = "auto") -> int:
        """Load the model (once per model) and this CT; returns the request's id."""
        import SimpleITK as sitk  # here, not at import: Slicer starts without it

        path = self.work_dir / INPUT_FILE
        return self._request(OPEN, lambda: sitk.WriteImage(image, str(path), useCompression=False),
                             ct=str(path), model=model_path, device=device, work_dir=str(self.work_dir))

    def send_clicks(self, clicks: Sequence, start_segment=None, keep_start: bool = False) -> int:
        """The segmentation for exactly `clicks` ((point_ras, include) pairs or core Clicks), from
        `start_segment` (a labelmap the user edited; the clicks then count from it). With
        `keep_start`, the start segment of the previous request is named again: the worker starts
        over whenever the named start changes, so later clicks on the same start must name it."""
        prepare, start = (lambda: None), (self._start_path if keep_start else None)
        if start_segment is not None:
            start = str(self.work_dir / f"{self._next_id + 1}-{START_FILE}")
            import SimpleITK as sitk

            prepare = lambda: sitk.WriteImage(start_segment, start, useCompression=True)  # noqa: E731
        self._start_path = start
        return self._request(CLICKS, prepare, clicks=clicks_payload(clicks), start_labelmap=start)

    # -- threads -----------------------------------------------------------------------------
    def _send_loop(self) -> None:
        while True:
            item = self._outbox.get()
            process = self._process
            if item is None or process is None:
                return
            prepare, line = item
            try:
                prepare()
                process.stdin.write(line + "\n")
                process.stdin.flush()
            except Exception as error:  # noqa: BLE001 - the worker is gone: say so in an answer
                self._answers.put({"id": None, "ok": False, "error": f"the click worker stopped ({error})"})
                return

    def _read_answers(self) -> None:
        process = self._process
        for line in process.stdout:
            answer = read_response(line.strip())
            if answer is not None:
                self._answers.put(answer)
        if process.returncode not in (None, 0) or process.poll() not in (None, 0):
            self._answers.put({"id": None, "ok": False, "error": "the click worker ended unexpectedly; "
                                                              "see the log for its last lines"})

    def _read_log(self) -> None:
        for line in self._process.stderr:
            line = line.rstrip("\n")
            progress = read_progress_line(line)
            if progress is not None:
                self.progress = progress
            elif line.strip():
                self.log_lines.append(line)
                self._pending_log.put((logging.INFO, "click worker: " + line))

    # -- answers -----------------------------------------------------------------------------
    def flush_log(self) -> None:
        """Write the lines the reader thread queued, on this (the polling) thread."""
        processes.write_queued_log(self._pending_log, logger)

    def poll(self) -> list[dict[str, Any]]:
        """The answers that arrived since the last poll, oldest first (call from the GUI thread)."""
        self.flush_log()
        answers = []
        while True:
            try:
                answers.append(self._answers.get_nowait())
            except queue.Empty:
                return answers

    def wait_for(self, request_id: int, timeout: float = 120.0) -> dict[str, Any]:
        """Block until the answer to `request_id` (scripts and tests; the GUI polls)."""
        import time

        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            for answer in self.poll():
                if answer.get("id") in (request_id, None):
                    return answer
            time.sleep(0.02)
        raise TimeoutError(f"no answer to request {request_id} within {timeout:g} s")

    @staticmethod
    def result(answer: dict[str, Any]):
        """The SegmentationOutput an answer names (None for "no clicks left")."""
        from .results import load_output_files

        if not answer.get("ok"):
            raise RuntimeError(answer.get("error", "the click worker failed"))
        folder = answer.get("result_dir")
        return None if folder is None else load_output_files(folder)


def newest_clicks_answer(answers: Sequence[dict[str, Any]], newest_request: int) -> Optional[dict[str, Any]]:
    """The answer to the newest clicks request among `answers` (older ones are superseded);
    failures of the worker itself (id None) are returned too."""
    for answer in reversed(answers):
        if answer.get("id") is None or (answer.get("op") == CLICKS and answer.get("id") == newest_request):
            return answer
    return None
