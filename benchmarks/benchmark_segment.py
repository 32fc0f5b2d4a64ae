#!/usr/bin/env python
"""End-to-end `segment` against a plain reference pipeline, side by side in one run.

For each CT: (a) ours  = `python -m AttentionUNetSegmentLib segment CT -o labels.nii.gz
--attention-dir DIR --summary-json S` (WITH the three attention maps, CLI defaults: maps on
their own grids), and (b) reference = benchmarks/reference_pipeline.py (SimpleITK + MONAI, the
same network and precision, WITHOUT attention maps). Each runs as its own process, so its wall
time includes process start and imports, and its peak RSS (os.wait4) is its own. Runs alternate
ours / reference to share whatever else loads the machine. Printed: wall time, per-stage
seconds, peak RSS, the ratio ours / reference, and the Dice between the two labelmaps.

CTs: a 512x512x200 phantom (phantom.generator.generate_case, spacing 0.78 x 0.78 x 1.5 mm),
NIH Pancreas-CT 0001 (512x512x240, ../shared/data), and, with --whole-body, a 512x512x800 CT at
0.8 x 0.8 x 1.25 mm (the phantom stacked four times) for the memory bound (ours only, then the
reference). Generated CTs are cached in --work.

    python benchmarks/benchmark_segment.py [--repeats 1] [--whole-body] [--profile] [--json FILE]
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
PYTHON = sys.executable
NIH = REPO.parent / "shared" / "data" / "nih-pancreas-ct-0001" / "ct.nii.gz"


def _environment(threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "AttentionUNetSegment"), env.get("PYTHONPATH")]))
    return env


def _run_child(command: list[str], env: dict) -> dict:
    """Wall seconds, peak RSS (MB, os.wait4: this child only) and output of one child process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    chunks = []
    while True:  # drain the pipe without reaping the child
        chunk = process.stdout.read(65536)
        if not chunk:
            break
        chunks.append(chunk)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    text = b"".join(chunks).decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{text[-3000:]}")
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "output": text}


def _ours(ct: Path, out: Path, env: dict, extra=()) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    summary = out / "summary.json"
    run = _run_child([PYTHON, "-m", "AttentionUNetSegmentLib", "segment", str(ct), "-o", str(out / "labels.nii.gz"),
                      "--attention-dir", str(out / "attention"), "--summary-json", str(summary),
                      "--progress", "none", *extra], env)
    data = json.loads(summary.read_text())
    run.update(seconds=data["seconds"], device=data["device"], precision=data["precision"])
    return run


def _reference(ct: Path, out: Path, env: dict) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    report = out / "reference.json"
    run = _run_child([PYTHON, str(REPO / "benchmarks" / "reference_pipeline.py"), str(ct), str(out / "labels.nii.gz"),
                      "--json", str(report)], env)
    data = json.loads(report.read_text())
    run.update(seconds=data["seconds"], device=data["device"], precision=data["precision"])
    return run


def _dice(a: Path, b: Path) -> float:
    import numpy as np
    import SimpleITK as sitk

    # GetArrayFromImage (a copy): a view of a temporary image would outlive its memory.
    x = sitk.GetArrayFromImage(sitk.ReadImage(str(a))) > 0
    y = sitk.GetArrayFromImage(sitk.ReadImage(str(b))) > 0
    total = int(x.sum()) + int(y.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(x, y).sum()) / total


def phantom_ct(work: Path, slices: int = 200) -> Path:
    """512x512x`slices` phantom at 0.78 x 0.78 x 1.5 mm (cached)."""
    path = work / f"phantom-512x512x{slices}.nii.gz"
    if not path.exists():
        import SimpleITK as sitk

        sys.path.insert(0, str(REPO / "AttentionUNetSegment"))
        from AttentionUNetSegmentLib.phantom.generator import generate_case

        case = generate_case(10000, spacing_xyz=(0.78, 0.78, 1.5), fov_mm=0.78 * 512, z_extent_mm=1.5 * slices)
        sitk.WriteImage(case.ct, str(path))
    return path


def whole_body_ct(work: Path, phantom: Path) -> Path:
    """512x512x800 at 0.8 x 0.8 x 1.25 mm: the phantom's slices stacked four times (cached)."""
    path = work / "wholebody-512x512x800.nii.gz"
    if not path.exists():
        import numpy as np
        import SimpleITK as sitk

        array = sitk.GetArrayFromImage(sitk.ReadImage(str(phantom)))
        stacked = np.concatenate([array] * 4, axis=0)[:800]
        image = sitk.GetImageFromArray(stacked)
        image.SetSpacing((0.8, 0.8, 1.25))
        image.SetOrigin((-204.8, -204.8, -500.0))
        sitk.WriteImage(image, str(path))
    return path


def compare(name: str, ct: Path, work: Path, repeats: int, env: dict) -> dict:
    rows = {"ours": [], "reference": []}
    for repeat in range(repeats):
        rows["ours"].append(_ours(ct, work / name / f"ours-{repeat}", env))
        rows["reference"].append(_reference(ct, work / name / f"reference-{repeat}", env))
    best = {k: min(v, key=lambda r: r["wall_s"]) for k, v in rows.items()}
    result = {
        "ct": str(ct),
        "ours": best["ours"], "reference": best["reference"],
        "ratio_wall": best["ours"]["wall_s"] / best["reference"]["wall_s"],
        "all_wall_s": {k: [r["wall_s"] for r in v] for k, v in rows.items()},
        "dice_ours_vs_reference": _dice(work / name / "ours-0" / "labels.nii.gz",
                                        work / name / "reference-0" / "labels.nii.gz"),
    }
    for row in (result["ours"], result["reference"]):
        row.pop("output", None)
    _print(name, result)
    return result


def _print(name: str, result: dict) -> None:
    print(f"\n== {name}: {result['ct']}")
    for who in ("ours", "reference"):
        row = result[who]
        stages = ", ".join(f"{k} {v:.1f}" for k, v in row["seconds"].items())
        print(f"  {who:9s} wall {row['wall_s']:6.1f} s  peak RSS {row['peak_rss_mb']:6.0f} MB  "
              f"({row['device']}, {row['precision']})  stages: {stages}")
    print(f"  ratio ours / reference (wall): {result['ratio_wall']:.2f}   "
          f"Dice ours vs reference: {result['dice_ours_vs_reference']:.4f}")


def profile_ours(ct: Path, work: Path, env: dict) -> None:
    """cProfile of one `segment` run in-process: where the time goes, top 20 by cumulative time."""
    out = work / "profile"
    out.mkdir(parents=True, exist_ok=True)
    stats = out / "segment.prof"
    _run_child([PYTHON, "-m", "cProfile", "-o", str(stats), "-m", "AttentionUNetSegmentLib", "segment", str(ct),
                "-o", str(out / "labels.nii.gz"), "--attention-dir", str(out / "attention"), "--progress", "none"], env)
    import pstats

    print("\n== cProfile of ours (top 20 by cumulative time)")
    pstats.Stats(str(stats)).sort_stats("cumulative").print_stats(20)


def main() -> int:
    parser = argparse.ArgumentParser(description="segment vs a plain SimpleITK + MONAI pipeline, end to end")
    parser.add_argument("--work", default="/tmp/attention-unet-benchmark", help="cache and outputs")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of the children")
    parser.add_argument("--whole-body", action="store_true", help="also the 512x512x800 memory check")
    parser.add_argument("--skip-nih", action="store_true")
    parser.add_argument("--profile", action="store_true", help="cProfile one run of ours on the phantom first")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    env = _environment(args.threads)
    phantom = phantom_ct(work)
    if args.profile:
        profile_ours(phantom, work, env)
    figures = {"phantom_512x512x200": compare("phantom", phantom, work, args.repeats, env)}
    if not args.skip_nih and NIH.exists():
        figures["nih_pancreas_0001"] = compare("nih", NIH, work, args.repeats, env)
    if args.whole_body:
        figures["whole_body_512x512x800"] = compare("wholebody", whole_body_ct(work, phantom), work, 1, env)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
