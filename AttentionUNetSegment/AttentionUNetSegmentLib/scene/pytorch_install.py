"""Getting a recent enough PyTorch into Slicer's Python without importing it into Slicer's process,
and without freezing Slicer while it downloads.

Checking: `importlib.util.find_spec` (finds, imports nothing) and the installed package's
metadata for its version (reads a text file, imports nothing). Importing torch into Slicer just to
check would load its DLLs, which Windows then keeps locked, so a later install or upgrade fails
until Slicer restarts. A torch older than MINIMUM_TORCH_VERSION (another extension may have
installed one) is offered an upgrade, as a missing one is offered an install.

Installing, after the user agreed (the module asks): light-the-torch, which picks the CUDA build
that matches the NVIDIA driver found (the CPU build when there is none; plain `pip install torch`
would give Windows users PyPI's CPU-only build), in hidden child processes of PythonSlicer:
`pip install light-the-torch`, then `light_the_torch install "torch>=MINIMUM"`. Both get a pip
constraints file pinning the numpy and SimpleITK that Slicer ships. This is the tool the PyTorch
extension (SlicerPyTorch) uses too; the module runs it itself, even when that extension is
installed, because `PyTorchUtilsLogic.installTorch` runs pip on Slicer's GUI thread (Slicer
freezes for minutes) and takes no constraints. `InstallTask` runs the commands in the background:
start, poll (step and the installer's last line), cancel (returns at once). A restart of Slicer is
offered afterwards. `InstallFlow` is the module's side of it, without Qt: it offers the install
when a run needs PyTorch, owns the task and the run waiting for it, and its poll() says what the
module shows (the module's timer calls it; the dialogs are the module's, passed in).
"""

from __future__ import annotations

import importlib.util
import logging
import queue
import subprocess
import threading
from collections import deque
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable, Optional, Sequence

from . import processes

from .i18n import tr as _  # Slicer's translation, in this file's context

logger = logging.getLogger(__name__)

FIND_TORCH_CODE = "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('torch') else 3)"
LIGHT_THE_TORCH = "light-the-torch>=0.7"
#: The oldest torch the engine runs with: pyproject.toml's `torch>=` (a test keeps the two equal).
MINIMUM_TORCH_VERSION = "2.1"
RUNNING, SUCCEEDED, FAILED, CANCELLED = "running", "succeeded", "failed", "cancelled"
DECLINED = {"missing": "PyTorch is required: install it (or the PyTorch extension) and press Segment again.",
            "old": f"PyTorch {MINIMUM_TORCH_VERSION} or newer is required: upgrade it and press Segment again."}
NOT_FOUND_AFTER = "PyTorch was installed but cannot be found: restart Slicer and press Segment again."


def torch_found_here() -> bool:
    """PyTorch installed in this Python (nothing is imported)."""
    importlib.invalidate_caches()
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def torch_version_here() -> Optional[str]:
    """The installed torch's version from its package metadata (nothing is imported), or None."""
    importlib.invalidate_caches()
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None


def version_tuple(version: str) -> tuple[int, ...]:
    """(2, 1, 0) from "2.1.0+cu121" or "2.1.0a0+git...": the leading number of each part."""
    numbers = []
    for part in version.split("+")[0].split("."):
        digits = part[:len(part) - len(part.lstrip("0123456789"))]
        if not digits:
            break
        numbers.append(int(digits))
    return tuple(numbers)


def torch_problem() -> Optional[str]:
    """None when a usable PyTorch is installed, else "missing" or "old" (< MINIMUM_TORCH_VERSION)."""
    if not torch_found_here():
        return "missing"
    version = torch_version_here()
    if version is not None and version_tuple(version) < version_tuple(MINIMUM_TORCH_VERSION):
        return "old"
    return None


def torch_found_in(python_executable: Optional[str] = None, timeout_s: float = 60.0) -> bool:
    """PyTorch installed in the Python that runs the jobs, asked of a hidden child process."""
    python = python_executable or processes.python_executable()
    try:
        result = subprocess.run([python, "-c", FIND_TORCH_CODE], stdin=subprocess.DEVNULL,
                                capture_output=True, timeout=timeout_s, env=processes.child_environment(),
                                **processes.hidden_window_options())
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def pip_constraints_for_shipped_packages(names: Sequence[str] = ("numpy", "SimpleITK")) -> str:
    """pip constraints (`name==version`) pinning packages Slicer ships, so installing torch never
    replaces them."""
    lines = []
    for name in names:
        try:
            lines.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return "\n".join(lines) + "\n"


def write_constraints_file(folder: str) -> str:
    path = Path(folder) / "AttentionUNetSegment-constraints.txt"
    path.write_text(pip_constraints_for_shipped_packages(), encoding="utf-8")
    return str(path)


@dataclass
class InstallPlan:
    """How PyTorch will be installed: shown to the user before anything is downloaded."""

    route: str                       # "light-the-torch"
    commands: list[list[str]]        # child processes to run, one after the other

    def description(self) -> str:
        return ("with light-the-torch (the tool the PyTorch extension uses), which picks the CUDA build "
                "for the NVIDIA GPU found, else the CPU build; numpy and SimpleITK, which Slicer ships, "
                "are pinned:\n" + "\n".join(" ".join(c) for c in self.commands))


def install_plan(python_executable: Optional[str] = None, constraints_path: Optional[str] = None) -> InstallPlan:
    """The one route, whether or not the PyTorch extension is installed (see the module docstring)."""
    python = python_executable or processes.python_executable()
    constraint = ["--constraint", constraints_path] if constraints_path else []
    return InstallPlan("light-the-torch", [
        [python, "-m", "pip", "install", "--disable-pip-version-check", LIGHT_THE_TORCH, *constraint],
        [python, "-m", "light_the_torch", "install", f"torch>={MINIMUM_TORCH_VERSION}", *constraint],
    ])


def install_question(problem: str, plan: InstallPlan) -> str:
    """What the module asks before installing ("missing") or upgrading ("old")."""
    if problem == "old":
        first = (f"This module needs PyTorch >= {MINIMUM_TORCH_VERSION}; Slicer has PyTorch "
                 f"{torch_version_here()} (perhaps installed by another extension).\n\nUpgrade it now "
                 f"{plan.description()}?\n\nIf another module has already used PyTorch in this session, "
                 "restart Slicer first (Windows keeps its files locked).")
    else:
        first = f"This module needs PyTorch, which is not installed in Slicer yet.\n\nInstall it now {plan.description()}?"
    return (first + "\n\nThis downloads about 200 MB (CPU) to several GB (GPU) and may take several minutes; "
            "Slicer stays usable, and you can cancel.")


@dataclass
class InstallStatus:
    state: str
    step: int          # 1-based number of the command running (or that failed)
    steps: int
    line: str          # the installer's last output line
    error: str = ""    # one line when state == FAILED


class InstallTask:
    """The plan's commands, one after the other, in hidden child processes read by a thread: the
    GUI polls (`poll`, which also writes the output to the log on the polling thread, as
    `SegmentationJob` does) and never waits; `cancel()` returns at once."""

    def __init__(self, plan: InstallPlan, kill_after_s: float = 1.0):
        self.plan = plan
        self.kill_after_s = kill_after_s
        self.lines: deque[str] = deque(maxlen=400)
        self._pending_log: "queue.SimpleQueue[str]" = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._state, self._step, self._line, self._error = RUNNING, 0, "", ""
        self._process: Optional[subprocess.Popen] = None
        self._cancelled = False
        self._stopped = threading.Event()

    @property
    def process(self) -> Optional[subprocess.Popen]:
        return self._process

    def start(self) -> "InstallTask":
        threading.Thread(target=self._run, name="AttentionUNetSegmentInstall", daemon=True).start()
        return self

    def _run(self) -> None:
        try:
            for step, command in enumerate(self.plan.commands, start=1):
                with self._lock:
                    if self._cancelled:
                        return
                    self._step = step
                    self._process = process = subprocess.Popen(
                        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                        text=True, encoding="utf-8", errors="replace", bufsize=1,
                        env=processes.child_environment(), **processes.hidden_window_options())
                assert process.stdout is not None
                for raw in process.stdout:
                    line = raw.rstrip()
                    if line:
                        with self._lock:
                            self._line = line
                            self.lines.append(line)
                        self._pending_log.put(line)
                if process.wait() != 0:
                    with self._lock:
                        if not self._cancelled:
                            last = self._line or f"exit code {process.returncode}"
                            self._state, self._error = FAILED, f"{' '.join(command[2:5])} failed: {last}"
                    return
            with self._lock:
                if not self._cancelled:
                    self._state = SUCCEEDED
        except OSError as error:
            with self._lock:
                self._state, self._error = FAILED, f"the installer could not start: {error}"

    def poll(self) -> InstallStatus:
        while True:
            try:
                logger.info("PyTorch install: %s", self._pending_log.get_nowait())
            except queue.Empty:
                break
        with self._lock:
            return InstallStatus(self._state, self._step, len(self.plan.commands), self._line, self._error)

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            process = self._process
            if self._state == RUNNING:
                self._state = CANCELLED
        processes.stop_tree_in_background(process, lambda level, text: self._pending_log.put(text),
                                          self.kill_after_s, then=self._stopped.set)

    def wait_stopped(self, timeout: Optional[float] = None) -> bool:
        """After `cancel()`: wait until the installer's process has ended."""
        return self._stopped.wait(timeout)


@dataclass
class Offer:
    ready: bool                        # PyTorch is usable: segment now
    task: Optional[InstallTask] = None  # an install the user agreed to, started
    error: str = ""


def offer_install(ask_install: Callable[[str], bool], temporary_folder: str) -> Offer:
    """Ready; or, when PyTorch is missing or too old and `ask_install(question)` agreed, the
    install started in the background; or a one-line error (declined, PythonSlicer missing)."""
    problem = torch_problem()
    if problem is None:
        return Offer(True)
    try:
        plan = install_plan(constraints_path=write_constraints_file(temporary_folder))
    except processes.PythonSlicerNotFound as error:
        return Offer(False, error=str(error))
    if not ask_install(install_question(problem, plan)):
        return Offer(False, error=DECLINED[problem])
    return Offer(False, InstallTask(plan).start())


def finish_install(task: InstallTask, ask_restart: Callable[[], bool], restart: Callable[[], None]) -> tuple[bool, str]:
    """After the task ended successfully: (go on segmenting, one-line error). Offers the restart."""
    problem = torch_problem()
    if problem == "old":  # Windows keeps a PyTorch that something has loaded locked until a restart
        return False, (f"PyTorch is still {torch_version_here()} (older than {MINIMUM_TORCH_VERSION}): restart "
                       "Slicer, then press Segment again (and accept the upgrade if asked).")
    if problem is not None:
        return False, NOT_FOUND_AFTER
    if ask_restart():
        restart()
        return False, ""
    return True, ""


@dataclass
class FlowUpdate:
    """What one poll of `InstallFlow` gives the module to show."""

    running: bool = False               # still installing: `percent` on the bar, `status` line
    percent: int = 0
    status: str = ""                    # also the line when installed with no run waiting
    error: str = ""                     # one line (a dialog), `details` for its details
    details: str = ""
    go_on: bool = False                 # installed and usable: probe the devices, run `then`
    then: Optional[Callable[[], None]] = None  # the run the install was for
    task: Optional[InstallTask] = None  # the task that ended (finish() reads it)


class InstallFlow:
    """The module's install of PyTorch: offered when a run needs it, run in the background, the
    run it was for (`then`) started once it has finished. No Qt: the module's timer calls poll();
    `ask_install(question)`, `ask_restart(question)` and `restart()` are the module's dialogs."""

    def __init__(self, ask_install: Callable[[str], bool], ask_restart: Callable[[str], bool],
                 restart: Callable[[], None]):
        self.ask_install, self.ask_restart, self.restart = ask_install, ask_restart, restart
        self.task: Optional[InstallTask] = None
        self.then: Optional[Callable[[], None]] = None    # the run waiting for the install

    @property
    def running(self) -> bool:
        return self.task is not None

    def offer(self, then: Callable[[], None], temporary_folder: str) -> Offer:
        """As `offer_install`; an install started (or one already running: no question, not ready)
        runs `then` once it has finished."""
        if self.task is not None:   # already installing (a click meanwhile): run this one after it
            self.then = then
            return Offer(False)
        offer = offer_install(self.ask_install, temporary_folder)
        if offer.task is not None:
            self.task, self.then = offer.task, then
        return offer

    def poll(self) -> Optional[FlowUpdate]:
        """None when nothing is installing; the progress while it runs; once it has ended, the
        update to pass to finish() (after the module has put its progress away)."""
        task = self.task
        if task is None:
            return None
        status = task.poll()
        if status.state == RUNNING:  # pip gives no fraction: the bar counts the steps
            return FlowUpdate(True, int(100 * max(status.step - 1, 0) / max(status.steps, 1)),
                              _("Installing PyTorch, step {step}/{steps}: {line}").format(
                                  step=status.step, steps=status.steps, line=status.line[-120:]))
        then, self.task, self.then = self.then, None, None
        if status.state == FAILED:
            return FlowUpdate(error=_("Installing PyTorch failed: {error}").format(error=status.error),
                              details="\n".join(task.lines))
        return FlowUpdate(then=then, task=task)

    def finish(self, update: FlowUpdate) -> FlowUpdate:
        """An ended install's outcome: the restart offered (`finish_install`); go on, or an error."""
        if update.error or update.task is None:
            return update
        go_on, error = finish_install(update.task, lambda: self.ask_restart(_(
            "PyTorch is installed. Restart Slicer now? (Recommended; segmenting also works without a restart.)")),
            self.restart)
        return FlowUpdate(status=_("PyTorch is installed: press Segment."), error=error, go_on=go_on,
                          then=update.then)

    def cancel(self) -> bool:
        """Stop the install (at once; its process tree ends in the background): False if none ran."""
        task, self.task, self.then = self.task, None, None
        if task is not None:
            task.cancel()
        return task is not None
