#!/usr/bin/env python
"""End-to-end figures of issue 11 on one machine (run by gpu_check.sh; works on a CPU too).

    single   : `segment` on a 512x512x200 phantom with --attention-dir, wall time of the whole
               command (process start, imports, model load included), twice (cold, warm caches)
    reference: benchmarks/reference_pipeline.py on the same CT (no attention maps)
    cohort   : `segment FOLDER -o OUT --attention-dir ...` on N copies of the phantom: cases per
               minute and seconds per case (model loaded once, reading/writing overlapped)

Writes one JSON file. `--smoke` uses a small phantom and 2 cohort cases (a check that it runs).

    python benchmarks/gpu_figures.py OUT_DIR [--device cuda] [--cases 8] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _timed(command: list[str], log: Path) -> float:
    start = time.perf_counter()
    with open(log, "w") as handle:
        code = subprocess.call(command, stdout=handle, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({code}); see {log}")
    return seconds


def _phantom(folder: Path, smoke: bool) -> Path:
    import SimpleITK as sitk

    sys.path.insert(0, str(REPO / "AttentionUNetSegment"))
    from AttentionUNetSegmentLib.phantom.generator import generate_case

    slices, side, spacing = (60, 192, 1.5) if smoke else (200, 512, 0.78)
    path = folder / f"phantom-{side}x{side}x{slices}.nii.gz"
    if not path.exists():
        case = generate_case(10000, spacing_xyz=(spacing, spacing, 1.5), fov_mm=spacing * side, z_extent_mm=1.5 * slices)
        sitk.WriteImage(case.ct, str(path))
    return path


def _segment(ct, out: Path, device: str, extra=()) -> list[str]:
    return [sys.executable, "-m", "AttentionUNetSegmentLib", "segment", str(ct), "-o", str(out), "--device", device,
            "--progress", "none", *extra]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    work = out / "e2e"
    work.mkdir(parents=True, exist_ok=True)
    figures: dict = {"device": args.device}

    t0 = time.perf_counter()
    ct = _phantom(work, args.smoke)
    figures["phantom"] = {"path": ct.name, "generate_s": time.perf_counter() - t0}

    single = []
    for attempt in range(2):
        run = work / f"single-{attempt}"
        run.mkdir(exist_ok=True)
        wall = _timed(_segment(ct, run / "labels.nii.gz", args.device,
                               ["--attention-dir", str(run / "attention"), "--summary-json", str(run / "s.json")]),
                      out / f"single-{attempt}.log")
        single.append({"wall_s_with_process_start": wall, **json.loads((run / "s.json").read_text())["seconds"]})
    figures["single_case"] = single

    report = work / "reference.json"
    wall = _timed([sys.executable, str(REPO / "benchmarks" / "reference_pipeline.py"), str(ct),
                   str(work / "reference.nii.gz"), "--device", args.device, "--json", str(report)],
                  out / "reference.log")
    figures["reference"] = {"wall_s_with_process_start": wall, **json.loads(report.read_text())["seconds"]}
    figures["ratio_single_over_reference"] = single[-1]["wall_s_with_process_start"] / wall

    cohort = work / "cohort"
    cohort.mkdir(exist_ok=True)
    count = 2 if args.smoke else args.cases
    for index in range(count):
        link = cohort / f"case{index:02d}.nii.gz"
        if not link.exists():
            os.symlink(ct.resolve(), link)
    wall = _timed(_segment(cohort, work / "cohort-out", args.device,
                           ["--attention-dir", str(work / "cohort-attention"), "--summary-json",
                            str(work / "cohort.json")]), out / "cohort.log")
    summary = json.loads((work / "cohort.json").read_text())
    per_case = [case["seconds"] for case in summary["cases"]]
    figures["cohort"] = {
        "cases": count, "ok": summary["cases_ok"], "wall_s_with_process_start": wall,
        "cases_per_minute": summary["cases_per_minute"], "seconds_per_case": 60.0 / summary["cases_per_minute"],
        "mean_stage_seconds": {k: sum(c[k] for c in per_case) / len(per_case) for k in per_case[0]},
    }
    (out / "e2e.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
