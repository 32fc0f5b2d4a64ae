"""Cohort mode of `segment`: many CTs, one model load, the network kept busy.

    reader thread:  read + prepare case i+1   (SimpleITK; releases the GIL)
    this thread:    network on case i         (torch; releases the GIL)
    writer thread:  finish + export case i-1  (restore, clean-up, files)

A case that fails (bad file, too small, unwritable output) gets its one-line error and the run
goes on; the summary at the end gives cases ok / failed and cases per minute, and the exit code
is EXIT_CASES_FAILED if any case failed. Under torchrun (RANK / WORLD_SIZE in the environment)
each rank takes every WORLD_SIZE-th case from RANK, on GPU LOCAL_RANK; no process group is needed
since ranks share nothing but the file system.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..core.errors import InputError
from ..core.options import SegmentationOptions
from .contract import EXIT_CASES_FAILED, EXIT_OK, case_summary
from .export import CohortFolders, export_prediction, plan_cohort_folders
from .options import SegmentRequest
from .segmenter import LoadedModel, load_segmentation_model, named_after, read_case, warn_if_empty


@dataclass
class CohortReport:
    ok: list[dict] = field(default_factory=list)  # one summary per case written
    failed: list[dict] = field(default_factory=list)  # {"input", "error"}

    def fail(self, path: Path, message: str) -> None:
        print(f"error: {message}", file=sys.stderr)
        self.failed.append({"input": str(path), "error": message})


@dataclass
class _Run:
    """What every case of one cohort shares."""

    request: SegmentRequest
    model: LoadedModel
    options: SegmentationOptions
    folders: CohortFolders


def distributed_rank() -> tuple[int, int, Optional[int]]:
    """(rank, world size, local rank or None) from torchrun's environment; (0, 1, None) without."""
    try:
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        local = os.environ.get("LOCAL_RANK")
        return rank, world, None if local is None else int(local)
    except ValueError:
        raise InputError(None, "RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers") from None


def _device_for_rank(requested: str, local_rank: Optional[int]) -> str:
    """Each torchrun process on its own GPU; an explicit cuda:N is respected."""
    import torch

    if local_rank is None or requested not in ("auto", "cuda") or not torch.cuda.is_available():
        return requested
    return f"cuda:{local_rank % torch.cuda.device_count()}"


def _read_and_prepare(case, run: _Run):
    from ..core.pipeline import prepare

    image, read_seconds = read_case(case.path)
    prepared = prepare(image, run.model.network, run.model.spec, run.options)
    prepared.seconds = {"read": read_seconds, **prepared.seconds}
    return prepared


def _finish_and_export(case, prepared, inferred, run: _Run) -> dict:
    from ..core.pipeline import finish

    result = finish(prepared, inferred, run.model.network, run.model.spec, run.options)
    seconds = {k: v for k, v in result.seconds.items() if k != "total"}
    summary = case_summary(case.path, result, run.model.path, run.model.spec, seconds)
    targets = run.folders.targets(case.name, run.request.outputs)
    export_prediction(result, targets, summary)
    warn_if_empty(case.path, summary["volume_ml"])
    described = ", ".join(f"{name} {ml:.1f} mL" for name, ml in summary["volume_ml"].items())
    print(f"{case.name}: {described}; wrote {targets.labels}", flush=True)
    return summary


def _outcome(future: Future, case, report: CohortReport) -> Optional[object]:
    """The future's result, or None after recording the case's failure in one line."""
    try:
        return future.result()
    except InputError as error:
        report.fail(case.path, str(named_after(error, case.path)))
    except Exception as error:  # noqa: BLE001 - a bug on one case must not stop the cohort
        traceback.print_exc()
        report.fail(case.path, f"{case.path}: unexpected failure ({type(error).__name__}: {error})")
    return None


def _collect(pending, report: CohortReport) -> None:
    if pending is not None:
        case, future = pending
        summary = _outcome(future, case, report)
        if summary is not None:
            report.ok.append(summary)


def _run_cases(cases, run: _Run, report: CohortReport) -> None:
    """The three-stage overlap of the module docstring; at most one case waits in each stage,
    so memory holds three cases at most, whatever the cohort's size."""
    from ..core.pipeline import infer

    with ThreadPoolExecutor(1, "read") as reader, ThreadPoolExecutor(1, "write") as writer:
        prepared_next = reader.submit(_read_and_prepare, cases[0], run) if cases else None
        pending = None  # (case, future) being finished and exported
        for index, case in enumerate(cases):
            prepared_future = prepared_next
            if index + 1 < len(cases):
                prepared_next = reader.submit(_read_and_prepare, cases[index + 1], run)
            prepared = _outcome(prepared_future, case, report)
            if prepared is None:
                continue
            try:
                inferred = infer(prepared, run.model.network, run.model.spec, run.options)
            except Exception as error:  # noqa: BLE001 - recorded by _outcome like any failure
                failed = Future()
                failed.set_exception(error)
                _outcome(failed, case, report)
                continue
            _collect(pending, report)
            pending = (case, writer.submit(_finish_and_export, case, prepared, inferred, run))
        _collect(pending, report)


def run_cohort(request: SegmentRequest, cases) -> int:
    """Segment and export every case of this rank's share; returns the exit code."""
    from ..files.cases import shard

    rank, world, local_rank = distributed_rank()
    if request.region.point_ras is not None:
        raise InputError(None, "--point names one place in one CT; it cannot be used with several CTs")
    folders = plan_cohort_folders(request.outputs)
    mine = shard(cases, rank, world)
    t0 = time.perf_counter()
    model = load_segmentation_model(request.model)
    options = request.segmentation_options(device=_device_for_rank(request.window.device, local_rank))
    report = CohortReport()
    _run_cases(mine, _Run(request, model, options, folders), report)
    minutes = (time.perf_counter() - t0) / 60.0
    per_minute = len(report.ok) / minutes if minutes > 0 else 0.0
    where = f" (rank {rank} of {world})" if world > 1 else ""
    print(f"cohort{where}: {len(report.ok)} ok, {len(report.failed)} failed of {len(mine)} cases; "
          f"{per_minute:.2f} cases per minute", file=sys.stderr if request.progress == "json" else sys.stdout)
    if request.outputs.summary is not None:
        _write_cohort_summary(request.outputs.summary, rank, world, report, per_minute, minutes)
    return EXIT_CASES_FAILED if report.failed else EXIT_OK


def _write_cohort_summary(path: Path, rank: int, world: int, report: CohortReport, per_minute: float,
                          minutes: float) -> None:
    from ..files.writing import atomic_output

    target = Path(path).expanduser()
    if world > 1:
        target = target.with_name(f"{target.name[:-len('.json')]}.rank{rank}.json")
    summary = {"cases_ok": len(report.ok), "cases_failed": len(report.failed),
               "cases_per_minute": per_minute, "seconds": minutes * 60.0, "rank": rank, "world_size": world,
               "cases": report.ok, "failures": report.failed}
    with atomic_output(target) as temporary:
        temporary.write_text(json.dumps(summary, indent=2), encoding="utf-8")
