"""The file types this package reads and writes, each named once.

Which images `segment` and `evaluate` read, which files an output may be, what a cohort's
labelmaps and the maps may be written as. The writer behind each kind of output is chosen in one
place too: service/export.py (labelmaps, Slicer segmentations, maps, summaries).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from ..core.errors import PathLike

#: Single-file and header/data image formats read as CTs and labelmaps (plus DICOM series).
INPUT_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
#: Single DICOM files: the whole series a file belongs to is read.
DICOM_FILE_EXTENSIONS = (".dcm", ".ima", ".dicom")
#: A Slicer segmentation: an NRRD labelmap with segment names, colours and terminology.
SEGMENTATION_EXTENSION = ".seg.nrrd"
#: Image outputs: SimpleITK picks the writer from the extension, so only these are allowed.
IMAGE_OUTPUT_EXTENSIONS = (SEGMENTATION_EXTENSION,) + INPUT_EXTENSIONS
#: What a labelmap may be written as when `segment` names the files (a cohort's --output-type).
LABELMAP_TYPES = ("nii.gz", "nii", "nrrd", "seg.nrrd", "mha")
#: What the attention maps may be written as (nrrd: uncompressed, the fast path Slicer reads).
MAP_TYPES = ("nii.gz", "nrrd")


def full_extension(path: PathLike, known: Sequence[str] = IMAGE_OUTPUT_EXTENSIONS) -> str:
    """The (lower-case) extension of `path`, recognising compound ones such as ``.seg.nrrd``.

    The longest entry of `known` that the name ends with wins; otherwise the last suffix.
    """
    name = Path(path).name.lower()
    for ext in sorted(known, key=len, reverse=True):
        if name.endswith(ext.lower()) and len(name) > len(ext):
            return ext.lower()
    return Path(name).suffix


def image_extension(path: PathLike) -> Optional[str]:
    """The image extension of `path` (".nii.gz", ".seg.nrrd", ...), or None for any other file."""
    name = Path(path).name.lower()
    return next((ext for ext in sorted(IMAGE_OUTPUT_EXTENSIONS, key=len, reverse=True) if name.endswith(ext)),
                None)


def is_segmentation_file(path: PathLike) -> bool:
    return full_extension(path) == SEGMENTATION_EXTENSION
