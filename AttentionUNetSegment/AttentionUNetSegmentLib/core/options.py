"""What a segmentation is asked to do: one dataclass per concern, each default and check written
once, here.

    WindowOptions   how the sliding window runs: overlap, windows per batch, device, precision
    RegionOptions   where: the whole CT, or the user's clicks (a cube around one click for a
                    model without click channels)
    ClickRegionOptions  the region a click-conditioned network runs on, and how it grows
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


def check_point(point) -> Point:
    values = tuple(float(v) for v in point)
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise InputError(None, f"a point is three finite numbers R,A,S; got {point!r}")
    return values  # type: ignore[return-value]


@dataclass(frozen=True)
class Click:
    """One click of the user, in Slicer's RAS millimetres: include ("this is it") or exclude."""

    point_ras: Point
    include: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "point_ras", check_point(self.point_ras))
        object.__setattr__(self, "include", bool(self.include))


@dataclass(frozen=True)
class RegionOptions:
    """The whole CT, or where the user clicked, in order (Slicer's RAS millimetres).

    A click-conditioned model takes every click (core.interactive). A model without click
    channels takes one include click: the cube of `roi_size_mm` around it is segmented and the
    component at the point kept. `point_ras` is the first click's point; giving only it means
    one include click there.
    """

    point_ras: Optional[Point] = None
    roi_size_mm: float = DEFAULT_ROI_SIZE_MM
    clicks: tuple[Click, ...] = ()

    def __post_init__(self) -> None:
        clicks = tuple(c if isinstance(c, Click) else Click(*c) for c in self.clicks)
        if self.point_ras is not None:
            first = Click(self.point_ras)
            if clicks and clicks[0].point_ras != first.point_ras:
                raise InputError(None, "point_ras must be the first click's point")
            clicks = clicks or (first,)
        object.__setattr__(self, "clicks", clicks)
        object.__setattr__(self, "point_ras", clicks[0].point_ras if clicks else None)
        if not float(self.roi_size_mm) > 0:
            raise InputError(None, f"the region size must be positive, got {self.roi_size_mm} mm")


@dataclass(frozen=True)
class ClickRegionOptions:
    """Where a click-conditioned network runs after each click (core.click_region): the clicks
    and the current mask with a margin, grown where the object touches the region's side."""

    margin_voxels: int = 8      # context around the clicks and the mask (16 mm at 2 mm)
    max_grow: int = 3           # AutoZoom: how often the region may grow after one click
    cap_windows: float = 2.5    # ... up to this many windows along each axis
    # The windows of a grown region share this fraction (not --overlap: a region 1.5 windows
    # wide takes 2 windows at 0.25 but 3 at 0.5, and a click must answer within a second).
    overlap: float = 0.25

    def __post_init__(self) -> None:
        object.__setattr__(self, "overlap", check_overlap(self.overlap))
        if int(self.margin_voxels) < 0 or int(self.max_grow) < 0 or not float(self.cap_windows) >= 1.0:
            raise InputError(None, "the click region needs margin >= 0, growth steps >= 0 and a cap >= 1 window")


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
