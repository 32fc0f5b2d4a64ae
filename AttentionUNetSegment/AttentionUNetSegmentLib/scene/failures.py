"""One line for the user from a failed `segment` process (never a traceback)."""

from __future__ import annotations

from typing import Optional, Sequence


def _known_cause(lowered: str) -> Optional[str]:
    if "no module named 'torch'" in lowered or 'no module named "torch"' in lowered:
        return ("PyTorch is not installed in Slicer's Python: press Segment again and accept the "
                "installation, or install the PyTorch extension")
    if "out of memory" in lowered and ("cuda" in lowered or "gpu" in lowered or "mps" in lowered):
        return ("the GPU ran out of memory: choose CPU as device, or a lower quality (overlap), "
                "or close other programs using the GPU")
    if "cuda" in lowered and ("not available" in lowered or "no cuda gpus" in lowered or
                              "not compiled with cuda" in lowered):
        return "no usable CUDA GPU was found: choose CPU (or Auto) as device"
    return None


def describe_failure(returncode: Optional[int], stderr_lines: Sequence[str]) -> str:
    """One line for the user from a failed `segment` process."""
    known = _known_cause("\n".join(stderr_lines).lower())
    if known:
        return known
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


def describe_worker_failure(error: str, log_lines: Sequence[str]) -> str:
    """One line for the user when the click worker itself failed (it died, or could not start):
    a known cause from its log (PyTorch missing, GPU memory), else the client's line."""
    return _known_cause("\n".join(log_lines).lower()) or error
