"""Run one `segment` request, as the command line parsed it: a single CT, or a cohort."""

from __future__ import annotations

import sys
import time

from .cohort import run_cohort
from .contract import EXIT_OK, make_progress
from .export import plan_case_targets
from .options import SegmentRequest
from .segmenter import load_segmentation_model, segment_file


def _check_the_machine(request: SegmentRequest) -> None:
    """Device problems are about the machine, not a file: report them before touching any file."""
    from ..core.devices import resolve_device, resolve_precision

    resolve_precision(request.window.precision, resolve_device(request.window.device))


def _run_single(request: SegmentRequest) -> int:
    ct_path = request.inputs[0]
    targets = plan_case_targets(request.outputs, ct_path)
    t0 = time.perf_counter()
    model = load_segmentation_model(request.model, clicks=bool(request.region.clicks))
    summary = segment_file(ct_path, targets, model, request.segmentation_options(),
                           progress=make_progress(request.progress))
    described = ", ".join(f"{name} {ml:.1f} mL" for name, ml in summary["volume_ml"].items())
    print(f"{described}; {time.perf_counter() - t0:.1f} s on {summary['device']} ({summary['precision']}); "
          f"wrote {targets.labels}", file=sys.stderr if request.progress == "json" else sys.stdout)
    return EXIT_OK


def run_request(request: SegmentRequest) -> int:
    """Run one `segment` request: a single CT, or a cohort (cohort.py). Returns the exit code."""
    from ..files.cases import find_cases, is_cohort_folder

    _check_the_machine(request)
    if len(request.inputs) > 1 or is_cohort_folder(request.inputs[0]):
        return run_cohort(request, find_cases(request.inputs))
    return _run_single(request)
