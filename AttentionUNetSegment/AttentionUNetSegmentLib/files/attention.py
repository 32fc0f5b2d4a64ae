"""The attention-map files `segment` writes (attention_<gate>.<ext>), named and read in one place
for the command line, the figures and the Slicer module."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import SimpleITK as sitk

from ..core.errors import PathLike
from .reading import read_image

PREFIX = "attention_"


def attention_file_name(gate: str, extension: str) -> str:
    """'gate2', 'nii.gz' -> 'attention_gate2.nii.gz'."""
    return f"{PREFIX}{gate}.{extension}"


def gates_in(folder: PathLike) -> list[str]:
    """The gates with a map in `folder`, sorted."""
    return sorted({p.name[len(PREFIX):].split(".")[0] for p in Path(folder).glob(PREFIX + "*")})


def read_attention_maps(folder: PathLike, gates: Optional[Sequence[str]] = None) -> dict[str, sitk.Image]:
    """{gate: float32 image} for `gates` (default: every map in `folder`); a gate without a file
    is left out. An unreadable file is an InputError naming it."""
    folder = Path(folder)
    maps: dict[str, sitk.Image] = {}
    for gate in gates_in(folder) if gates is None else gates:
        matches = sorted(folder.glob(f"{PREFIX}{gate}.*"))
        if not matches:
            continue
        image = read_image(matches[0])
        maps[gate] = image if image.GetPixelID() == sitk.sitkFloat32 else sitk.Cast(image, sitk.sitkFloat32)
    return maps
