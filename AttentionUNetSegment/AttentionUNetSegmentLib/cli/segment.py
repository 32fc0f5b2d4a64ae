"""`segment`: one CT to one segmentation file, or a cohort (several CTs, or folders of them).

Single case: `segment CT -o OUT` writes OUT (and the optional maps), all or nothing.
Cohort: `segment CT1 CT2 ... -o FOLDER` or `segment FOLDER -o FOLDER` (cohort.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..core.errors import InputError
from .argtypes import whole_number
from .cohort import run_cohort
from .segment_common import (
    Targets,
    case_summary,
    check_folder,
    load_segmentation_model,
    segmentation_options,
    warn_if_empty,
    write_outputs,
)


def _parse_point(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected R,A,S in millimetres, e.g. 12.5,-30,100; got {text!r}")
    return values  # type: ignore[return-value]


def _parse_overlap(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"overlap must be in [0, 1); got {text}")
    return value


def add_segment_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "segment",
        help="segment the pancreas on a CT (or on every CT of a cohort)",
        description="Segment the pancreas on a CT and optionally write each attention gate's map. "
        "The labelmap lies exactly on the input CT's grid. Several CTs, or a folder of them, make "
        "a cohort run: the model is loaded once, reading and writing overlap the network, a bad "
        "case is reported and skipped, and under torchrun each rank takes its share of the cases.",
    )
    p.add_argument("ct", nargs="+", metavar="CT",
                   help="CT volume: .nii/.nii.gz, .nrrd, .mha/.mhd, or a DICOM series folder; several "
                   "CTs or a folder of CTs (image files and DICOM series sub-folders) for a cohort")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="labelmap (.nii.gz, .nii, .nrrd, .mha) or Slicer segmentation (.seg.nrrd); "
                   "for a cohort, a folder (created if missing) receiving <case>.<--output-type>")
    p.add_argument("--output-type", choices=COHORT_OUTPUT_TYPES, default="nii.gz",
                   help="file type of each case's labelmap in a cohort run (default: nii.gz)")
    p.add_argument("--attention-dir", metavar="DIR",
                   help="write one float32 volume (0..1) per attention gate here: attention_<gate>.<ext> "
                   "(cohort: DIR/<case>/attention_<gate>.<ext>)")
    p.add_argument("--attention-grid", choices=MAP_GRIDS, default="model",
                   help="grid of the attention maps: 'model' = each gate's own coarse grid (1/2, 1/4, "
                   "1/8 of the model grid, exact geometry; viewers resample in physical space; fast "
                   "and small), 'ct' = resampled onto the full CT grid (large and slow to write) "
                   "(default: model)")
    p.add_argument("--attention-format", choices=("nii.gz", "nrrd"), default="nii.gz",
                   help="file type of the attention maps (default: nii.gz; nrrd is uncompressed and faster)")
    p.add_argument("--probabilities", metavar="FILE",
                   help="write the pancreas probability (float32, 0..1) to FILE (cohort: a folder "
                   "receiving <case>.nii.gz)")
    p.add_argument("--probability-grid", choices=MAP_GRIDS, default="model",
                   help="grid of the probability map: 'model' (canonical orientation, model spacing, "
                   "exact geometry) or 'ct' (the CT grid; then labels == probability > 0.5 before "
                   "clean-up) (default: model)")
    p.add_argument("--model", metavar="MODEL",
                   help="model file (.pt) or model folder (containing model.pt); default: the bundled model")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto",
                   help="where the network runs (default: auto = CUDA GPU if present, else CPU; "
                   "under torchrun, the rank's LOCAL_RANK GPU)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                   help="arithmetic on the device (default: auto = bf16/fp16 autocast on CUDA, fp32 on CPU)")
    p.add_argument("--overlap", type=_parse_overlap, default=0.5,
                   help="fraction of each sliding window shared with its neighbour, 0..<1 (default: 0.5)")
    p.add_argument("--batch-size", type=whole_number(1), default=2, help="windows per forward pass (default: 2)")
    p.add_argument("--point", type=_parse_point, metavar="R,A,S",
                   help="click-to-segment: a RAS point in mm (as Slicer shows it) on the pancreas; "
                   "only the region around it is segmented and the component at the point is kept")
    p.add_argument("--roi-size", type=float, default=160.0, metavar="MM",
                   help="edge of the cube around --point that is segmented, in mm (default: 160)")
    p.add_argument("--no-largest-component", action="store_true",
                   help="keep every connected component, not only the largest")
    p.add_argument("--no-fill-holes", action="store_true", help="do not fill enclosed holes")
    p.add_argument("--progress", choices=("bar", "json", "none"), default="bar",
                   help="progress on stderr: a bar, JSON lines for programs, or nothing (default: bar)")
    p.add_argument("--summary-json", metavar="FILE",
                   help="write a JSON summary (volumes in mL, per-stage seconds, device, gates) to FILE "
                   "(cohort: every case and the totals; under torchrun one file per rank, FILE.rank<N>.json)")
    p.set_defaults(func=run_segment)


MAP_GRIDS = ("model", "ct")
COHORT_OUTPUT_TYPES = ("nii.gz", "nii", "nrrd", "seg.nrrd", "mha")


def _planned_outputs(args, ct_path: Path) -> Targets:
    """Every file a single-case `segment` will write, checked before any work is done."""
    from ..files.writing import check_output_path

    targets = Targets(check_output_path(args.output, inputs=[ct_path]))
    if args.probabilities:
        targets.probabilities = check_output_path(args.probabilities, inputs=[ct_path])
    if args.summary_json:
        targets.summary = check_output_path(args.summary_json, inputs=[ct_path], extensions=(".json",))
    if args.attention_dir:
        targets.attention_dir = check_folder(args.attention_dir, "--attention-dir")
    files = [p for p in (targets.labels, targets.probabilities, targets.summary) if p is not None]
    names = [str(p.resolve()) for p in files]
    if len(set(names)) != len(names):
        raise InputError(args.output, "two outputs would be written to the same file")
    return targets


def run_segment(args) -> int:
    from ..core.devices import resolve_device, resolve_precision
    from ..files.cases import find_cases, is_cohort_folder

    # Device problems are about the machine, not a file: report them before touching any file.
    resolve_precision(args.precision, resolve_device(args.device))
    if len(args.ct) > 1 or is_cohort_folder(args.ct[0]):
        return run_cohort(args, find_cases(args.ct))
    return _run_single(args, Path(args.ct[0]))


def _run_single(args, ct_path: Path) -> int:
    from ..core.pipeline import segment_image
    from ..core.progress import make_progress
    from ..files.reading import check_ct_like, read_ct

    targets = _planned_outputs(args, ct_path)
    t0 = time.perf_counter()
    image = read_ct(ct_path)
    read_seconds = time.perf_counter() - t0
    for warning in check_ct_like(image, ct_path):
        print(f"warning: {warning}", file=sys.stderr)
    model, spec, model_path = load_segmentation_model(args)
    try:
        result = segment_image(image, model, spec, segmentation_options(args),
                               progress=make_progress(args.progress))
    except InputError as error:
        if error.path is not None:
            raise
        raise InputError(ct_path, error.problem) from error  # name the file the problem is about

    seconds = {"read": read_seconds, **{k: v for k, v in result.seconds.items() if k != "total"}}
    summary = case_summary(ct_path, result, model_path, spec, seconds)
    seconds["write"] = write_outputs(result, targets, args, summary)
    seconds["total"] = time.perf_counter() - t0
    described = ", ".join(f"{name} {ml:.1f} mL" for name, ml in summary["volume_ml"].items())
    print(f"{described}; {seconds['total']:.1f} s on {result.inference.device} "
          f"({result.inference.precision}); wrote {targets.labels}",
          file=sys.stderr if args.progress == "json" else sys.stdout)
    warn_if_empty(ct_path, summary["volume_ml"])
    return 0
