"""Starting and stopping helper processes the way Slicer does it, on Windows, macOS and Linux.

- Which Python: inside Slicer, `PythonSlicer` (Slicer's Python with Slicer's environment); never
  `sys.executable` there, which is the Slicer application itself. Outside Slicer, this Python.
- No console window on Windows (as `slicer.util.launchConsoleProcess` does: STARTUPINFO with
  SW_HIDE, plus CREATE_NO_WINDOW); on POSIX a new session, so the process and everything it
  starts form one process group.
- Stopping stops the whole tree: on Windows `PythonSlicer.exe` is a launcher that starts the real
  interpreter as a child sharing its pipes, so killing the launcher alone leaves the computation
  running (SlicerMONAIAuto3DSeg kills the tree for this reason): `taskkill /T /F`. On POSIX the
  process group gets SIGTERM, then SIGKILL.
- The child writes UTF-8 (PYTHONIOENCODING), whatever the Windows code page.
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import slicer

logger = logging.getLogger(__name__)


class PythonSlicerNotFound(RuntimeError):
    """Slicer's own Python launcher is missing: nothing can run in the background."""


def is_windows() -> bool:
    """The platform switch of this file (tests switch it to drive the Windows code path)."""
    return os.name == "nt"


def running_inside_slicer() -> bool:
    return getattr(slicer, "app", None) is not None


def python_executable() -> str:
    """The Python that runs background work: PythonSlicer inside Slicer, this Python outside.

    Raises PythonSlicerNotFound inside Slicer when PythonSlicer is neither on PATH nor in
    Slicer's bin folder (a broken install): silently using `sys.executable` there would start a
    second Slicer application instead.
    """
    if not running_inside_slicer():
        return sys.executable
    name = "PythonSlicer.exe" if is_windows() else "PythonSlicer"
    found = shutil.which("PythonSlicer")
    if found:
        return found
    home = getattr(slicer.app, "slicerHome", "") or ""
    candidate = Path(home) / "bin" / name if home else None
    if candidate is not None and candidate.is_file():
        return str(candidate)
    raise PythonSlicerNotFound(
        f"{name} was not found (not on PATH, not in {Path(home) / 'bin' if home else 'Slicer bin folder'}): "
        "the segmentation cannot run in the background; reinstall 3D Slicer")


def hidden_window_options() -> dict[str, Any]:
    """Popen options: no console window on Windows; its own process group on POSIX."""
    if is_windows():
        startupinfo = subprocess.STARTUPINFO()
        startupinfo.dwFlags |= subprocess.STARTF_USESHOWWINDOW
        startupinfo.wShowWindow = subprocess.SW_HIDE
        return {"startupinfo": startupinfo, "creationflags": subprocess.CREATE_NO_WINDOW}
    return {"start_new_session": True}


def child_environment(base: Optional[Mapping[str, str]] = None, python_path_first: str = "") -> dict[str, str]:
    """Environment of a child Python: our package importable, unbuffered UTF-8 output."""
    env = dict(os.environ if base is None else base)
    if python_path_first:
        paths = [python_path_first] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def lib_parent_dir() -> str:
    """The folder that contains the AttentionUNetSegmentLib package (goes on PYTHONPATH)."""
    return str(Path(__file__).resolve().parents[2])  # scene/processes.py -> Lib -> its parent


def _log(level: int, text: str) -> None:
    logger.log(level, "%s", text)


#: How the stop functions report: `log(level, text)`. A thread other than Slicer's GUI thread
#: passes a queue's put instead (Slicer's log handler talks to Qt; see job.py).
Log = Callable[[int, str], None]


def kill_process_tree(process: subprocess.Popen, force: bool = True, log: Log = _log) -> None:
    """Signal `process` and every process it started. Windows: taskkill /T /F (always forced:
    console programs ignore the polite WM_CLOSE). POSIX: the process group (start_new_session)."""
    if is_windows():
        result = subprocess.run(["taskkill", "/T", "/F", "/PID", str(process.pid)],
                                stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                **hidden_window_options())
        if result.returncode not in (0, 128):  # 128: the process had already ended
            log(logging.INFO, f"taskkill {process.pid}: {(result.stderr or result.stdout or '').strip()}")
        return
    try:
        os.killpg(process.pid, signal.SIGKILL if force else signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass  # the group is gone already


def stop_process_tree(process: subprocess.Popen, grace_s: float = 1.0, already_asked: bool = False,
                      log: Log = _log) -> bool:
    """Stop `process` and its descendants; True when the process has ended. Blocks up to
    `grace_s` + 5 s: call it off the GUI thread.

    POSIX: SIGTERM to the group (unless `already_asked`), SIGKILL to the group after `grace_s`
    (also when the launcher itself ended: a child may ignore SIGTERM). Windows: the tree is
    killed at once.
    """
    if is_windows():
        kill_process_tree(process, force=True, log=log)
    else:
        if not already_asked:
            kill_process_tree(process, force=False, log=log)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        kill_process_tree(process, force=True, log=log)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        log(logging.WARNING, f"process {process.pid} did not stop")
        return False
    return True


def stop_tree_in_background(process: Optional[subprocess.Popen], log: Log, grace_s: float = 1.0,
                            then: Optional[Callable[[], None]] = None, name: str = "AttentionUNetSegmentStop"
                            ) -> threading.Thread:
    """Cancel without blocking the caller (the GUI thread): on POSIX the group gets SIGTERM now
    (cheap); a thread sends the kill after `grace_s`, waits for the process, then runs `then`
    (cleanup). On Windows `taskkill` itself runs in that thread. `log` must be safe to call from
    that thread (a queue the GUI thread empties)."""
    if process is not None and not is_windows():
        kill_process_tree(process, force=False, log=log)

    def stop() -> None:
        try:
            if process is not None:
                stop_process_tree(process, grace_s=grace_s, already_asked=True, log=log)
        finally:
            if then is not None:
                then()

    thread = threading.Thread(target=stop, name=name, daemon=True)
    thread.start()
    return thread


def write_queued_log(pending: "queue.SimpleQueue[tuple[int, str]]", log: logging.Logger) -> None:
    """Write the (level, text) lines a reader thread queued, on the calling (polling) thread:
    Slicer's log handler talks to Qt, so it must never be called from a reader thread."""
    while True:
        try:
            level, text = pending.get_nowait()
        except queue.Empty:
            return
        log.log(level, "%s", text)
