"""Errors a user can act on (each renders as one line naming the file and the problem), and
the path type they name."""

from __future__ import annotations

import os
from typing import Union

#: A file or folder name as users and callers give it.
PathLike = Union[str, os.PathLike]


class InputError(Exception):
    """Bad input or output path. `str(error)` is `"<path>: <problem>"`."""

    def __init__(self, path: PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(problem if self.path is None else f"{self.path}: {problem}")


class ModelFileError(InputError):
    """A model file that is missing, corrupt, truncated or incompatible."""


class CancelledError(Exception):
    """Raised when a progress/cancel callback asked the run to stop."""
