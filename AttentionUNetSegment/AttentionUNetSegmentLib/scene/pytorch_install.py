"""Getting PyTorch into Slicer's Python without importing it into Slicer's process.

Checking: `importlib.util.find_spec` (finds, imports nothing) here, or in a child Python.
Importing torch into Slicer just to check would load its DLLs, which Windows then keeps locked,
so a later install or upgrade fails until Slicer restarts.

Installing, after the user agreed (the module asks):
- with the PyTorch extension (SlicerPyTorch, which this extension depends on): its
  `PyTorchUtilsLogic().installTorch()`, which uses light-the-torch to pick the CUDA build that
  matches the NVIDIA driver found (CPU build when there is none);
- without it (a source checkout): the same route by hand, in child processes of PythonSlicer:
  `pip install light-the-torch`, then `light_the_torch install torch`. Plain `pip install torch`
  would give Windows users PyPI's CPU-only build.
Packages Slicer ships (numpy, SimpleITK) are pinned with a pip constraints file either way that
we control. A restart of Slicer is offered afterwards.
"""

from __future__ import annotations

import contextlib
import importlib.util
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager, Optional, Sequence

from . import processes

FIND_TORCH_CODE = "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('torch') else 3)"
LIGHT_THE_TORCH = "light-the-torch>=0.7"


def torch_found_here() -> bool:
    """PyTorch installed in this Python (nothing is imported)."""
    importlib.invalidate_caches()
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


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
    from importlib import metadata

    lines = []
    for name in names:
        try:
            lines.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return "\n".join(lines) + "\n"


@dataclass
class InstallPlan:
    """How PyTorch will be installed: shown to the user before anything is downloaded."""

    route: str                       # "PyTorch extension" or "light-the-torch"
    commands: list[list[str]]        # child processes to run (empty for the extension route)

    def description(self) -> str:
        if not self.commands:
            return ("through the PyTorch extension (it picks the CUDA build for the NVIDIA GPU found, "
                    "else the CPU build)")
        return ("with light-the-torch, which picks the CUDA build for the NVIDIA GPU found (else the "
                "CPU build):\n" + "\n".join(" ".join(c) for c in self.commands))


def install_plan(pytorch_extension_present: bool, python_executable: Optional[str] = None,
                 constraints_path: Optional[str] = None) -> InstallPlan:
    """The route: SlicerPyTorch when its PyTorchUtils module is there, else light-the-torch."""
    if pytorch_extension_present:
        return InstallPlan("PyTorch extension", [])
    python = python_executable or processes.python_executable()
    constraint = ["--constraint", constraints_path] if constraints_path else []
    return InstallPlan("light-the-torch", [
        [python, "-m", "pip", "install", "--disable-pip-version-check", LIGHT_THE_TORCH, *constraint],
        [python, "-m", "light_the_torch", "install", "torch", *constraint],
    ])


def write_constraints_file(folder: str) -> str:
    path = Path(folder) / "AttentionUNetSegment-constraints.txt"
    path.write_text(pip_constraints_for_shipped_packages(), encoding="utf-8")
    return str(path)


def run_install_commands(plan: InstallPlan, run: Callable[..., subprocess.CompletedProcess] = subprocess.run,
                         timeout_s: float = 3600.0) -> None:
    """Run the plan's commands hidden, one after the other; RuntimeError with pip's last line on failure."""
    for command in plan.commands:
        result = run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, encoding="utf-8",
                     errors="replace", timeout=timeout_s, env=processes.child_environment(),
                     **processes.hidden_window_options())
        if result.returncode != 0:
            lines = [line for line in (result.stderr or result.stdout or "").splitlines() if line.strip()]
            last = lines[-1] if lines else f"exit code {result.returncode}"
            raise RuntimeError(f"{' '.join(command[2:5])} failed: {last}")


def install_with_extension(pytorch_utils_module) -> None:
    """The SlicerPyTorch route (its logic asks no question: the module already asked)."""
    logic = pytorch_utils_module.PyTorchUtilsLogic()
    if logic.installTorch(askConfirmation=False) is None:
        raise RuntimeError("the PyTorch extension did not install PyTorch")


def import_pytorch_utils():
    """SlicerPyTorch's PyTorchUtils module, or None without the PyTorch extension."""
    try:
        import PyTorchUtils  # noqa: PLC0415 - a Slicer module, present only with the extension
    except ImportError:
        return None
    return PyTorchUtils


def ensure_pytorch(ask_install: Callable[[str], bool], ask_restart: Callable[[], bool],
                   restart: Callable[[], None], temporary_folder: str, pytorch_utils=None,
                   busy: Callable[[], ContextManager] = contextlib.nullcontext) -> tuple[bool, str]:
    """PyTorch present, or installed after `ask_install(how)` said yes; then a restart is offered.

    Returns (ready to segment, one-line error or ""). `pytorch_utils`: SlicerPyTorch's module or
    None. `busy()`: a context shown while installing (the module's wait cursor).
    """
    if torch_found_here():
        return True, ""
    try:
        plan = install_plan(pytorch_utils is not None, constraints_path=write_constraints_file(temporary_folder))
    except processes.PythonSlicerNotFound as error:
        return False, str(error)
    if not ask_install(plan.description()):
        return False, "PyTorch is required: install it (or the PyTorch extension) and press Segment again."
    try:
        with busy():
            if pytorch_utils is not None:
                install_with_extension(pytorch_utils)
            else:
                run_install_commands(plan)
    except Exception as error:  # noqa: BLE001 - pip's and the extension's failures become one line
        return False, f"Installing PyTorch failed: {error}"
    if not torch_found_here():
        return False, "PyTorch was installed but cannot be found: restart Slicer and press Segment again."
    if ask_restart():
        restart()
        return False, ""
    return True, ""
