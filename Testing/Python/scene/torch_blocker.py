"""A Python without PyTorch, for tests: a `sitecustomize` that makes `import torch` fail.

Put `folder` (from `write_torch_blocker`) on PYTHONPATH and set one of:
- BLOCK_TORCH=1: this Python and every child started from it have no torch (a stock Slicer
  whose PythonSlicer has none either);
- BLOCK_TORCH_HERE_ONLY=1: only this process (the variable is removed at start, so children, like
  the job's PythonSlicer, can import torch): Slicer's own process, which must never import it.
"""

from __future__ import annotations

from pathlib import Path

SITECUSTOMIZE = '''
import os
import sys


class _NoTorch:
    """Finder that refuses torch, as an interpreter without it would."""

    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked for this test)", name=name)
        return None


if os.environ.pop("BLOCK_TORCH_HERE_ONLY", None) == "1" or os.environ.get("BLOCK_TORCH") == "1":
    sys.meta_path.insert(0, _NoTorch())
'''


def write_torch_blocker(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return folder
