"""What a segmentation is asked to do: one dataclass per concern, each default and check written
once, here.

    WindowOptions   how the sliding window runs: overlap, windows per batch, device, precision
    RegionOptions   where: the whole CT, or a cube around a clicked point
    CleanupOptions  which connected components and holes survive
    MapOptions      which maps are computed besides the labels, and on which grid
    SegmentationOptions  the four together (core.pipeline's input)

The command line, the Slicer module, the cohort runner and the demo build these objects and
never repeat a default; invalid values raise InputError (one line) when an object is made.
Torch-free on purpose: the Slicer module file reads its defaults from here without loading torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from .errors import InputError

#: Fraction of each sliding window shared with its neighbour. The window step is rounded down to
#: a multiple of the network's divisor (16), so the overlap used can be higher than asked:
#: core.inference.effective_overlap says how much.
DEFAULT_OVERLAP = 0.5
DEFAULT_BATCH_SIZE = 2
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: Where a map lies: "model" = the grid it was computed on (a gate's own coarse grid, exact
#: geometry, small); "ct" = resampled onto the input CT's grid. The first is the default.
MAP_GRIDS = ("model", "ct")
#: Edge of the cube segmented around a clicked point.
DEFAULT_ROI_SIZE_MM = 160.0

Point = tuple[float, float, float]


def check_overlap(value: float) -> float:
    """The overlap as a float in [0, 1); InputError otherwise."""
    overlap = float(value)
    if not 0.0 <= overlap < 1.0:
        raise InputError(None, f"overlap must be in [0, 1), got {value}")
    return overlap


def check_batch_size(value: int) -> int:
    if int(value) != value or int(value) < 1:
        raise InputError(None, f"batch size must be a whole number >= 1, got {value}")
    return int(value)


def check_choice(what: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise InputError(None, f"{what} must be one of {', '.join(choices)}; got {value!r}")
    return value


@dataclass(frozen=True)
class WindowOptions:
    """How the network is run over the volume; the patch size comes from the model file."""

    overlap: float = DEFAULT_OVERLAP
    batch_size: int = DEFAULT_BATCH_SIZE   # windows per forward pass
    device: str = "auto"                   # auto | cpu | cuda | cuda:N | mps (core.devices checks it)
    precision: str = "auto"                # auto | fp32 | bf16 | fp16

    def __post_init__(self) -> None:
        object.__setattr__(self, "overlap", check_overlap(self.overlap))
        object.__setattr__(self, "batch_size", check_batch_size(self.batch_size))
        check_choice("precision", self.precision, PRECISIONS)


@dataclass(frozen=True)
class RegionOptions:
    """The whole CT, or (click-to-segment) a cube around a point in Slicer's RAS millimetres."""

    point_ras: Optional[Point] = None
    roi_size_mm: float = DEFAULT_ROI_SIZE_MM

    def __post_init__(self) -> None:
        if self.point_ras is not None:
            point = tuple(float(v) for v in self.point_ras)
            if len(point) != 3 or not all(math.isfinite(v) for v in point):
                raise InputError(None, f"a point is three finite numbers R,A,S; got {self.point_ras!r}")
            object.__setattr__(self, "point_ras", point)
        if not float(self.roi_size_mm) > 0:
            raise InputError(None, f"the region size must be positive, got {self.roi_size_mm} mm")


@dataclass(frozen=True)
class CleanupOptions:
    keep_largest: bool = True   # only the largest component (or the one at the clicked point)
    fill_holes: bool = True     # fill enclosed holes in 3D


@dataclass(frozen=True)
class MapOptions:
    """The maps computed besides the labels (the labelmap always lies on the CT's grid)."""

    attention: bool = True
    probabilities: bool = False
    attention_grid: str = MAP_GRIDS[0]
    probability_grid: str = MAP_GRIDS[0]

    def __post_init__(self) -> None:
        check_choice("the attention grid", self.attention_grid, MAP_GRIDS)
        check_choice("the probability grid", self.probability_grid, MAP_GRIDS)


@dataclass(frozen=True)
class SegmentationOptions:
    """Everything core.pipeline needs besides the CT and the model."""

    window: WindowOptions = field(default_factory=WindowOptions)
    region: RegionOptions = field(default_factory=RegionOptions)
    cleanup: CleanupOptions = field(default_factory=CleanupOptions)
    maps: MapOptions = field(default_factory=MapOptions)
