#!/usr/bin/env python
"""How long a click takes, the way the Slicer module sees it: the click worker process driven by
the module's own client (scene/click_worker.py), results read back from its files.

Per CT: the worker's start (Python, torch, the model: once per Slicer session), "open" (the CT
written by the module, read and preprocessed by the worker: once per new CT), then the clicks of
the simulated user (evaluation/clicks.py) on the CT's pancreas, each timed from the request to
the result read back (labelmap on the CT grid, the attention maps, the summary). Printed: seconds
per stage and per click, and the ratios to the issue's targets (first click on a new CT <= 5 s,
a warm click <= 1 s on 2 CPU cores, <= 0.3 s on a GPU). Only times are printed, never a Dice.
With --scene, each result is also applied as the click mode applies it (scene logic's
apply_result on a real MRML scene from the slicer-core wheel: segment and overlays; the 3D surface
is built when the mode ends) and
the slice views drawn, so "click to updated segment" is the time a user waits in Slicer.

CTs: a 512x512x200 phantom (0.78 x 0.78 x 1.5 mm, cached in --work) and, with --nih, NIH
Pancreas-CT 0001 (512x512x240) from ../shared/data.

    python benchmarks/benchmark_clicks.py [--clicks 10] [--nih] [--scene] [--device cpu] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIB_PARENT = REPO / "AttentionUNetSegment"
sys.path.insert(0, str(LIB_PARENT))
NIH = REPO.parent / "shared" / "data" / "nih-pancreas-ct-0001"

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

FIRST_CLICK_TARGET_S, WARM_CLICK_TARGET_S, GPU_CLICK_TARGET_S = 5.0, 1.0, 0.3


def phantom_with_truth(work: Path) -> tuple[Path, Path]:
    """A 512x512x200 phantom and its pancreas (cached)."""
    ct, truth = work / "phantom-512x512x200.nii.gz", work / "phantom-512x512x200-pancreas.nii.gz"
    if not (ct.exists() and truth.exists()):
        from AttentionUNetSegmentLib.phantom.generator import generate_case

        case = generate_case(10000, spacing_xyz=(0.78, 0.78, 1.5), fov_mm=0.78 * 512, z_extent_mm=1.5 * 200)
        sitk.WriteImage(case.ct, str(ct))
        sitk.WriteImage(sitk.Cast(case.labels == 1, sitk.sitkUInt8), str(truth))
    return ct, truth


class SceneApplier:
    """Apply each answer to a real MRML scene as the click mode does, and draw the slice views."""

    def __init__(self, ct_path: Path):
        sys.path.insert(0, str(REPO / "benchmarks"))
        from benchmark_slicer_logic import SceneSetup
        from AttentionUNetSegmentLib.scene.logic import AttentionUNetSegmentSceneLogic

        self.setup = SceneSetup(ct_path)
        self.logic = AttentionUNetSegmentSceneLogic(self.setup.scene, self.setup.segmentations_logic)
        self.segmentation_node = None

    def __call__(self, output) -> None:
        from AttentionUNetSegmentLib.scene.display import slice_view_rgba

        applied = self.logic.apply_result(self.setup.volume, output, segmentation_node=self.segmentation_node,
                                          surface=False)       # as the click mode: the 3D surface at Done
        self.segmentation_node = applied.segmentation_node
        for slice_logic in self.setup.slice_logics:
            slice_view_rgba(slice_logic)


def time_case(name: str, ct_path: Path, truth_path: Path, clicks: int, model: Path, device: str,
              scene: bool = False) -> dict:
    from AttentionUNetSegmentLib.evaluation.clicks import first_click, next_click
    from AttentionUNetSegmentLib.evaluation.interactive import index_to_ras, on_truth_grid
    from AttentionUNetSegmentLib.scene.click_worker import ClickWorkerClient

    ct = sitk.ReadImage(str(ct_path))
    truth = sitk.ReadImage(str(truth_path))
    truth_mask = sitk.GetArrayFromImage(truth) > 0
    spacing = tuple(reversed(truth.GetSpacing()))
    env = {**os.environ, "PYTHONPATH": str(LIB_PARENT)}
    apply_to_scene = SceneApplier(ct_path) if scene else None
    t0 = time.perf_counter()
    client = ClickWorkerClient(python_executable=sys.executable, env=env).start()
    try:
        opened = client.wait_for(client.open(ct, str(model), device), timeout=600)
        t_open = time.perf_counter() - t0
        if not opened["ok"]:
            raise RuntimeError(opened["error"])
        done, seconds, engine, in_scene = [], [], [], []
        click = first_click(truth_mask, spacing)
        for _ in range(clicks):
            if click is None:
                break
            done.append((index_to_ras(truth, click.index_zyx), click.include))
            t1 = time.perf_counter()
            answer = client.wait_for(client.send_clicks(done), timeout=600)
            output = client.result(answer)
            seconds.append(time.perf_counter() - t1)
            if apply_to_scene is not None:
                apply_to_scene(output)
                in_scene.append(time.perf_counter() - t1)
            engine.append(answer["seconds"])
            click = next_click(truth_mask, on_truth_grid(output.labelmap, truth), spacing)
    finally:
        client.stop()
    warm = seconds[1:]
    return {"case": name, "size_xyz": list(ct.GetSize()), "open_with_worker_start_s": t_open,
            "open_s": opened["seconds"], "click_s": seconds, "engine_s": engine,
            "first_click_s": seconds[0], "new_ct_s": opened["seconds"]["read"] + opened["seconds"]["preprocess"]
            + seconds[0], "warm_median_s": statistics.median(warm) if warm else None,
            "warm_max_s": max(warm) if warm else None, "click_to_scene_s": in_scene,
            "scene_warm_median_s": statistics.median(in_scene[1:]) if len(in_scene) > 1 else None,
            "scene_warm_max_s": max(in_scene[1:]) if len(in_scene) > 1 else None}


def report(row: dict, device: str) -> None:
    print(f"\n{row['case']} {row['size_xyz']}: worker start + model + open {row['open_with_worker_start_s']:.1f} s "
          f"(model {row['open_s']['model']:.1f} s, read {row['open_s']['read']:.1f} s, "
          f"preprocess {row['open_s']['preprocess']:.1f} s)")
    for k, (s, e) in enumerate(zip(row["click_s"], row["engine_s"]), start=1):
        print(f"  click {k:2d}: {s:5.2f} s round trip (network {e.get('inference', 0):.2f}, restore "
              f"{e.get('restore', 0):.2f}, write {e.get('write', 0):.2f})")
    target = GPU_CLICK_TARGET_S if device.startswith("cuda") else WARM_CLICK_TARGET_S
    print(f"  new CT (read + preprocess + first click): {row['new_ct_s']:.2f} s = "
          f"{row['new_ct_s'] / FIRST_CLICK_TARGET_S:.2f} x the {FIRST_CLICK_TARGET_S:g} s target")
    if row["warm_median_s"] is not None:
        print(f"  warm click: median {row['warm_median_s']:.2f} s, max {row['warm_max_s']:.2f} s = "
              f"{row['warm_median_s'] / target:.2f} / {row['warm_max_s'] / target:.2f} x the {target:g} s target")
    if row["scene_warm_median_s"] is not None:
        print(f"  warm click to the segment in the MRML scene (views drawn): median {row['scene_warm_median_s']:.2f} s, "
              f"max {row['scene_warm_max_s']:.2f} s = {row['scene_warm_median_s'] / target:.2f} / "
              f"{row['scene_warm_max_s'] / target:.2f} x the {target:g} s target")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clicks", type=int, default=10)
    parser.add_argument("--nih", action="store_true", help="also NIH Pancreas-CT 0001 (times only)")
    parser.add_argument("--scene", action="store_true",
                        help="also apply each result to a real MRML scene as the click mode does (slicer-core)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default=str(REPO / "Resources" / "Models" / "click_attention_unet.pt"))
    parser.add_argument("--work", default=str(REPO / "benchmark-work"))
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cases = [("phantom_512x512x200", *phantom_with_truth(work))]
    if args.nih:
        cases.append(("nih0001_512x512x240", NIH / "ct.nii.gz", NIH / "pancreas.nii.gz"))
    rows = []
    for name, ct, truth in cases:
        rows.append(time_case(name, ct, truth, args.clicks, Path(args.model), args.device, args.scene))
        report(rows[-1], args.device)
    if args.json:
        Path(args.json).write_text(json.dumps({"device": args.device, "cpu_count": os.cpu_count(), "cases": rows},
                                              indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
