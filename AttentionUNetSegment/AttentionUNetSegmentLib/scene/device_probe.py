"""Which PyTorch and GPUs the Python that will run the job has, asked without importing torch here.

Slicer must not import torch into its own process just to label the device menu (on Windows
that locks torch's DLLs, so a later install or upgrade fails), so a short child process answers,
hidden, while Slicer stays responsive: start(), then poll() from a timer.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any, Optional

from . import processes

PROBE_CODE = """
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

FAILED_PROBE = {"torch": None, "cuda": [], "mps": False, "error": "probe failed"}


class DeviceProbe:
    """Asks a Python process which PyTorch and GPUs it has, without blocking: start(), then poll()."""

    def __init__(self, python_executable: Optional[str] = None):
        self.python_executable = python_executable or processes.python_executable()
        self._process: Optional[subprocess.Popen] = None
        self.result: Optional[dict[str, Any]] = None

    def command(self) -> list[str]:
        return [self.python_executable, "-c", PROBE_CODE]

    def start(self) -> "DeviceProbe":
        self._process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, text=True, encoding="utf-8",
                                         errors="replace", env=processes.child_environment(),
                                         **processes.hidden_window_options())
        return self

    def poll(self) -> Optional[dict[str, Any]]:
        """None while running; then {"torch": version or None, "cuda": [names], "mps": bool}."""
        if self.result is None and self._process is not None and self._process.poll() is not None:
            out = self._process.stdout.read() if self._process.stdout else ""
            try:
                self.result = json.loads(out.strip().splitlines()[-1])
            except (ValueError, IndexError):
                self.result = dict(FAILED_PROBE)
        return self.result

    def stop(self) -> None:
        """End the probe if it still runs (the module is closing)."""
        if self._process is not None and self._process.poll() is None:
            processes.stop_process_tree(self._process, grace_s=0.5)


def device_choices(info: Optional[dict[str, Any]]) -> list[tuple[str, str]]:
    """(label, device) items of the device menu for a probe result (None: still asking)."""
    gpus, mps = (info or {}).get("cuda") or [], bool((info or {}).get("mps"))
    if info is None:
        auto = "Auto (checking for a GPU...)"
    elif gpus:
        auto = f"Auto: GPU ({gpus[0]})"
    else:
        auto = "Auto: Apple GPU (MPS)" if mps else "Auto: CPU (no GPU found)"
    if gpus:
        gpu = (f"GPU: {gpus[0]}", "cuda")
    elif mps:
        gpu = ("Apple GPU (MPS)", "mps")
    else:
        gpu = ("GPU (CUDA; none found)" if info is not None else "GPU (CUDA)", "cuda")
    return [(auto, "auto"), ("CPU", "cpu"), gpu]
