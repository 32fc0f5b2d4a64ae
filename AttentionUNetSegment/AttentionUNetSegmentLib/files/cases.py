"""Which CTs a `segment` command names: files, DICOM series folders, or folders of cases.

A path given on the command line is one case when it is a file or a folder holding DICOM files
(one series, as before); any other folder is a cohort folder whose cases are its image files
(.nii.gz, .nrrd, .mha, ...) and its sub-folders (a DICOM series each), in name order. Hidden
entries (".name") are skipped: they are our own temporary files or a system's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..core.errors import InputError, PathLike
from .formats import DICOM_FILE_EXTENSIONS, INPUT_EXTENSIONS, full_extension


@dataclass(frozen=True)
class Case:
    name: str  # output names derive from it: the file name without its image extension
    path: Path


def case_name(path: PathLike) -> str:
    """`ct.nii.gz` -> `ct`, `scan.seg.nrrd`-like compounds included; a folder keeps its name."""
    path = Path(path)
    ext = full_extension(path, INPUT_EXTENSIONS)
    name = path.name
    return name[: len(name) - len(ext)] if ext and not path.is_dir() else name


def _holds_dicom(folder: Path) -> bool:
    """Any file that is DICOM by extension or by its "DICM" preamble (checked on a few files)."""
    files = [p for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")]
    if any(p.suffix.lower() in DICOM_FILE_EXTENSIONS for p in files):
        return True
    for p in files[:8]:
        try:
            with open(p, "rb") as stream:
                if stream.read(132)[128:132] == b"DICM":
                    return True
        except OSError:
            continue
    return False


def _folder_cases(folder: Path) -> list[Path]:
    entries = [p for p in sorted(folder.iterdir()) if not p.name.startswith(".")]
    files = [p for p in entries if p.is_file() and full_extension(p, INPUT_EXTENSIONS) in INPUT_EXTENSIONS]
    folders = [p for p in entries if p.is_dir()]
    return files + folders


def is_cohort_folder(path: PathLike) -> bool:
    """A folder of cases (image files or series sub-folders), not itself one DICOM series."""
    path = Path(path).expanduser()
    return path.is_dir() and not _holds_dicom(path) and bool(_folder_cases(path))


def find_cases(paths: Sequence[PathLike]) -> list[Case]:
    """Every case named by `paths` (see the module docstring); names must be unique."""
    cases: list[Case] = []
    for given in paths:
        path = Path(given).expanduser()
        members = _folder_cases(path) if is_cohort_folder(path) else [path]
        cases.extend(Case(case_name(p), p) for p in members)
    seen: dict[str, Path] = {}
    for case in cases:
        if case.name in seen:
            raise InputError(case.path, f"has the same case name '{case.name}' as {seen[case.name]}; "
                                        "outputs would overwrite each other (rename one)")
        seen[case.name] = case.path
    return cases


def shard(cases: Sequence[Case], rank: int, world_size: int) -> list[Case]:
    """This rank's share of `cases`: every world_size-th one from `rank` (torchrun RANK/WORLD_SIZE)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
    return list(cases[rank::world_size])
