"""Cohort mode of `segment`: many CTs, one model load, the network kept busy.

    reader thread:  read + prepare case i+1   (SimpleITK; releases the GIL)
    this thread:    network on case i         (torch; releases the GIL)
    writer thread:  finish + write case i-1   (restore, clean-up, files)

A case that fails (bad file, too small, unwritable output) gets its one-line error and the run
goes on; the summary at the end gives cases ok / failed and cases per minute, and the exit code
is non-zero if any case failed. Under torchrun (RANK / WORLD_SIZE in the environment) each rank
takes every WORLD_SIZE-th case from RANK, on GPU LOCAL_RANK; no process group is needed since
ranks share nothing but the file system.
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
from .segment_common import (
    Targets,
    case_summary,
    check_folder,
    load_segmentation_model,
    segmentation_options,
    warn_if_empty,
    write_outputs,
)

EXIT_SOME_FAILED = 2


@dataclass
class CohortReport:
    ok: list[dict] = field(default_factory=list)  # one summary per case written
    failed: list[dict] = field(default_factory=list)  # {"input", "error"}

    def fail(self, path: Path, message: str) -> None:
        print(f"error: {message}", file=sys.stderr)
        self.failed.append({"input": str(path), "error": message})


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


def _targets(case, args, output_dir: Path, probability_dir: Optional[Path], attention_dir: Optional[Path]) -> Targets:
    return Targets(
        labels=output_dir / f"{case.name}.{args.output_type}",
        probabilities=None if probability_dir is None else probability_dir / f"{case.name}.nii.gz",
        attention_dir=None if attention_dir is None else attention_dir / case.name,
    )


def _plan_folders(args):
    """(output, probability, attention) folders, checked before any work; created now (cheap,
    and a cohort writes case by case, so there is no all-or-nothing across cases)."""
    if args.summary_json and not args.summary_json.lower().endswith(".json"):
        raise InputError(args.summary_json, "has an unsupported output type; use .json")
    folders = [check_folder(args.output, "-o (several CTs)")]
    folders.append(check_folder(args.probabilities, "--probabilities (several CTs)") if args.probabilities else None)
    folders.append(check_folder(args.attention_dir, "--attention-dir") if args.attention_dir else None)
    for folder in folders:
        if folder is not None:
            folder.mkdir(exist_ok=True)
    return folders


def _read_and_prepare(case, model, spec, options):
    from ..core.pipeline import prepare
    from ..files.reading import check_ct_like, read_ct

    t0 = time.perf_counter()
    image = read_ct(case.path)
    read_seconds = time.perf_counter() - t0
    for warning in check_ct_like(image, case.path):
        print(f"warning: {warning}", file=sys.stderr)
    prepared = prepare(image, model, spec, options)
    prepared.seconds = {"read": read_seconds, **prepared.seconds}
    return prepared


def _finish_and_write(case, prepared, inferred, model, spec, options, args, targets, model_path) -> dict:
    from ..core.pipeline import finish

    result = finish(prepared, inferred, model, spec, options)
    seconds = {k: v for k, v in result.seconds.items() if k != "total"}
    summary = case_summary(case.path, result, model_path, spec, seconds)
    seconds["write"] = write_outputs(result, targets, args)
    seconds["total"] = sum(seconds.values())
    warn_if_empty(case.path, summary["volume_ml"])
    described = ", ".join(f"{name} {ml:.1f} mL" for name, ml in summary["volume_ml"].items())
    print(f"{case.name}: {described}; wrote {targets.labels}", flush=True)
    return summary


def _outcome(future: Future, case, report: CohortReport) -> Optional[object]:
    """The future's result, or None after recording the case's failure in one line."""
    try:
        return future.result()
    except InputError as error:
        shown = error if error.path is not None else InputError(case.path, error.problem)
        report.fail(case.path, str(shown))
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


def _run_cases(cases, args, model, spec, options, folders, model_path, report: CohortReport) -> None:
    """The three-stage overlap of the module docstring; at most one case waits in each stage,
    so memory holds three cases at most, whatever the cohort's size."""
    from ..core.pipeline import infer

    with ThreadPoolExecutor(1, "read") as reader, ThreadPoolExecutor(1, "write") as writer:
        prepared_next = reader.submit(_read_and_prepare, cases[0], model, spec, options) if cases else None
        pending = None  # (case, future) being finished and written
        for index, case in enumerate(cases):
            prepared_future = prepared_next
            if index + 1 < len(cases):
                prepared_next = reader.submit(_read_and_prepare, cases[index + 1], model, spec, options)
            prepared = _outcome(prepared_future, case, report)
            if prepared is None:
                continue
            try:
                inferred = infer(prepared, model, spec, options)
            except Exception as error:  # noqa: BLE001 - recorded by _outcome like any failure
                failed = Future()
                failed.set_exception(error)
                _outcome(failed, case, report)
                continue
            _collect(pending, report)
            targets = _targets(case, args, *folders)
            pending = (case, writer.submit(_finish_and_write, case, prepared, inferred, model, spec,
                                           options, args, targets, model_path))
        _collect(pending, report)


def run_cohort(args, cases) -> int:
    rank, world, local_rank = distributed_rank()
    from ..files.cases import shard

    if args.point is not None:
        raise InputError(None, "--point names one place in one CT; it cannot be used with several CTs")
    folders = _plan_folders(args)
    mine = shard(cases, rank, world)
    t0 = time.perf_counter()
    model, spec, model_path = load_segmentation_model(args)
    options = segmentation_options(args, device=_device_for_rank(args.device, local_rank))
    report = CohortReport()
    _run_cases(mine, args, model, spec, options, folders, model_path, report)
    minutes = (time.perf_counter() - t0) / 60.0
    per_minute = len(report.ok) / minutes if minutes > 0 else 0.0
    where = f" (rank {rank} of {world})" if world > 1 else ""
    print(f"cohort{where}: {len(report.ok)} ok, {len(report.failed)} failed of {len(mine)} cases; "
          f"{per_minute:.2f} cases per minute", file=sys.stderr if args.progress == "json" else sys.stdout)
    if args.summary_json:
        _write_cohort_summary(args.summary_json, rank, world, report, per_minute, minutes)
    return EXIT_SOME_FAILED if report.failed else 0


def _write_cohort_summary(path: str, rank: int, world: int, report: CohortReport, per_minute: float,
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
