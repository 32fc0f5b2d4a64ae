"""`segment`: one CT to one segmentation file, or a cohort (several CTs, or folders of them).

This module only turns the command line into one service.options.SegmentRequest; the service
does the work (service/run.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from ..core.options import DEFAULT_ROI_SIZE_MM, MAP_GRIDS, CleanupOptions, RegionOptions, WindowOptions
from ..files.formats import LABELMAP_TYPES, MAP_TYPES
from ..service.options import COHORT_RULE, OutputOptions, SegmentRequest
from .argtypes import ClickAction, add_progress_argument, add_window_arguments, ras_point


def add_segment_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "segment",
        help="segment the pancreas on a CT (or on every CT of a cohort)",
        description="Segment the pancreas on a CT and optionally write each attention gate's map. "
        "The labelmap lies exactly on the input CT's grid. Several CTs, or a folder of them, make "
        "a cohort run: the model is loaded once, reading and writing overlap the network, a bad "
        "case is reported and skipped (exit code 3), and under torchrun each rank takes its share "
        "of the cases. " + COHORT_RULE,
    )
    p.add_argument("ct", nargs="+", metavar="CT",
                   help="CT volume: .nii/.nii.gz, .nrrd, .mha/.mhd, or a DICOM series folder; several "
                   "CTs or a folder of CTs (image files and DICOM series sub-folders) for a cohort")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="labelmap (.nii.gz, .nii, .nrrd, .mha) or Slicer segmentation (.seg.nrrd); "
                   "for a cohort, a folder (created if missing) receiving <case>.<--output-type>")
    p.add_argument("--output-type", choices=LABELMAP_TYPES, default=LABELMAP_TYPES[0],
                   help=f"file type of each case's labelmap in a cohort run (default: {LABELMAP_TYPES[0]})")
    p.add_argument("--attention-dir", metavar="DIR",
                   help="write one float32 volume (0..1) per attention gate here: attention_<gate>.<ext> "
                   "(cohort: DIR/<case>/attention_<gate>.<ext>)")
    p.add_argument("--attention-grid", choices=MAP_GRIDS, default=MAP_GRIDS[0],
                   help="grid of the attention maps: 'model' = each gate's own coarse grid (1/2, 1/4, "
                   "1/8 of the model grid, exact geometry; viewers resample in physical space; fast "
                   "and small), 'ct' = resampled onto the full CT grid (large and slow to write) "
                   f"(default: {MAP_GRIDS[0]})")
    p.add_argument("--attention-format", choices=MAP_TYPES, default=MAP_TYPES[0],
                   help=f"file type of the attention maps (default: {MAP_TYPES[0]}; nrrd is uncompressed "
                   "and faster)")
    p.add_argument("--probabilities", metavar="FILE",
                   help="write the pancreas probability (float32, 0..1) to FILE (cohort: a folder "
                   "receiving <case>.nii.gz)")
    p.add_argument("--probability-grid", choices=MAP_GRIDS, default=MAP_GRIDS[0],
                   help="grid of the probability map: 'model' (canonical orientation, model spacing, "
                   "exact geometry) or 'ct' (the CT grid; then labels == probability > 0.5 before "
                   f"clean-up) (default: {MAP_GRIDS[0]})")
    p.add_argument("--model", metavar="MODEL",
                   help="model file (.pt) or model folder (containing model.pt); default: the bundled model")
    add_window_arguments(p)
    p.add_argument("--point", dest="clicks", action=ClickAction, const=True, type=ras_point, metavar="R,A,S",
                   help="an include click: a RAS point in mm (as Slicer shows it, e.g. -12.5,30,4) on the "
                   "structure; repeatable. With no --model the bundled click-conditioned model segments "
                   "the structure the clicks point at (its region grows until the object is whole); a "
                   "model without click channels takes one --point and segments the cube around it")
    p.add_argument("--exclude-point", dest="clicks", action=ClickAction, const=False, type=ras_point,
                   metavar="R,A,S", help="an exclude click (\"not this\"), repeatable; --point and --exclude-point "
                   "are clicks in the order they are given, and the result equals clicking them one by one")
    p.add_argument("--roi-size", type=float, default=DEFAULT_ROI_SIZE_MM, metavar="MM",
                   help="edge of the cube around --point segmented by a model without click channels, "
                   f"in mm (default: {DEFAULT_ROI_SIZE_MM:g})")
    p.add_argument("--no-largest-component", action="store_true",
                   help="keep every connected component, not only the largest")
    p.add_argument("--no-fill-holes", action="store_true", help="do not fill enclosed holes")
    add_progress_argument(p)
    p.add_argument("--summary-json", metavar="FILE",
                   help="write a JSON summary (volumes in mL, per-stage seconds, device, gates) to FILE "
                   "(cohort: every case and the totals; under torchrun one file per rank, FILE.rank<N>.json)")
    p.set_defaults(func=run_segment)


def _path(text: Optional[str]) -> Optional[Path]:
    return None if text is None else Path(text)


def request_from_args(args: argparse.Namespace) -> SegmentRequest:
    """The one options object a `segment` command line stands for (the Namespace stops here)."""
    outputs = OutputOptions(
        labels=Path(args.output), attention_dir=_path(args.attention_dir), probabilities=_path(args.probabilities),
        summary=_path(args.summary_json), attention_grid=args.attention_grid,
        probability_grid=args.probability_grid, attention_format=args.attention_format,
        cohort_type=args.output_type)
    return SegmentRequest(
        inputs=tuple(Path(ct) for ct in args.ct), outputs=outputs, model=_path(args.model),
        window=WindowOptions(overlap=args.overlap, batch_size=args.batch_size, device=args.device,
                             precision=args.precision),
        region=RegionOptions(clicks=tuple(args.clicks or ()), roi_size_mm=args.roi_size),
        cleanup=CleanupOptions(keep_largest=not args.no_largest_component, fill_holes=not args.no_fill_holes),
        progress=args.progress)


def run_segment(args: argparse.Namespace) -> int:
    from ..service.run import run_request

    return run_request(request_from_args(args))
