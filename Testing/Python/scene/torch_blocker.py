"""A Python without PyTorch, for tests: a `sitecustomize` that makes `import torch` fail.

Put `folder` (from `write_torch_blocker`) on PYTHONPATH and set one of:
- BLOCK_TORCH=1: this Python and every child started from it have no torch (a stock Slicer
  whose PythonSlicer has none either);
- BLOCK_TORCH_HERE_ONLY=1: only this process (the variable is removed at start, so children, like
  the job's PythonSlicer, can import torch): Slicer's own process, which finds torch installed
  (`find_spec`, metadata) but must never import it; an import fails.
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


class _TorchNotImported:
    """Finder for a process that has torch installed (found, as Slicer's process finds the torch of
    PythonSlicer's shared site-packages) but must never import it: the import fails."""

    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            import importlib.machinery
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        raise ImportError(f"importing {module.__name__} is blocked in this process (this test)")


if os.environ.get("BLOCK_TORCH") == "1":
    sys.meta_path.insert(0, _NoTorch())
elif os.environ.pop("BLOCK_TORCH_HERE_ONLY", None) == "1":
    sys.meta_path.insert(0, _TorchNotImported())
'''


def write_torch_blocker(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return folder
