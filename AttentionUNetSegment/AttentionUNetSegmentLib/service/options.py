"""A `segment` request, decided once: what to read, which model, how to run, what to write.

The command line parses its arguments into one SegmentRequest (cli/segment.py) and hands it to
segmenter.run_request; nothing below that boundary sees an argparse Namespace. How the network
runs and what it computes are core.options' concerns; here is what is written, and where.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

from ..core.errors import InputError
from ..core.options import (
    MAP_GRIDS,
    CleanupOptions,
    MapOptions,
    RegionOptions,
    SegmentationOptions,
    WindowOptions,
    check_choice,
)
from ..files.formats import LABELMAP_TYPES, MAP_TYPES
from .contract import PROGRESS_KINDS

#: The one rule by which a cohort changes what the output options name.
COHORT_RULE = ("With several CTs, or a folder of them (a cohort), the outputs are folders: -o and "
               "--probabilities receive <case>.<type> files, --attention-dir one <case>/ folder per "
               "case, and --summary-json stays one file for the whole cohort.")


@dataclass(frozen=True)
class OutputOptions:
    """What is written: files for one CT, folders for a cohort (COHORT_RULE)."""

    labels: Path                              # -o: the labelmap or .seg.nrrd (cohort: a folder)
    attention_dir: Optional[Path] = None      # one map per gate
    probabilities: Optional[Path] = None      # the foreground probability (cohort: a folder)
    summary: Optional[Path] = None            # JSON summary (cohort: of every case)
    attention_grid: str = MAP_GRIDS[0]
    probability_grid: str = MAP_GRIDS[0]
    attention_format: str = MAP_TYPES[0]      # file type of the maps
    cohort_type: str = LABELMAP_TYPES[0]      # file type of each case's labelmap in a cohort

    def __post_init__(self) -> None:
        check_choice("the attention map type", self.attention_format, MAP_TYPES)
        check_choice("the cohort labelmap type", self.cohort_type, LABELMAP_TYPES)

    def maps(self) -> MapOptions:
        """The maps to compute: those that will be written, on the grids asked for."""
        return MapOptions(attention=self.attention_dir is not None, probabilities=self.probabilities is not None,
                          attention_grid=self.attention_grid, probability_grid=self.probability_grid)


@dataclass(frozen=True)
class SegmentRequest:
    """One `segment` run: one CT, or a cohort of them."""

    inputs: tuple[Path, ...]
    outputs: OutputOptions
    model: Optional[Path] = None              # a model file or folder; None: the bundled model
    window: WindowOptions = field(default_factory=WindowOptions)
    region: RegionOptions = field(default_factory=RegionOptions)
    cleanup: CleanupOptions = field(default_factory=CleanupOptions)
    progress: str = PROGRESS_KINDS[0]

    def __post_init__(self) -> None:
        if not self.inputs:
            raise InputError(None, "no CT given")
        check_choice("progress", self.progress, PROGRESS_KINDS)

    def segmentation_options(self, device: Optional[str] = None) -> SegmentationOptions:
        """What core.pipeline runs; `device` overrides the window's (a torchrun rank's GPU)."""
        window = self.window if device is None else replace(self.window, device=device)
        return SegmentationOptions(window, self.region, self.cleanup, self.outputs.maps())
