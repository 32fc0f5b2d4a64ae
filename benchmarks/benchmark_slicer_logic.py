#!/usr/bin/env python
"""Slicer module overhead: "Segment pressed" -> segment and overlays in the scene, vs the command.

Same CT, model, device and overlap, in one run:
  (a) command     - `python -m AttentionUNetSegmentLib segment CT -o labels.nrrd` (what a user
                    runs in a terminal), wall time of the process
  (b) command+att - the same with `--attention-dir` (the command doing exactly the module's work)
  (c) module      - what the Slicer module does when Segment is pressed, on a real MRML scene
                    (slicer-core wheel): CT volume node -> SegmentationJob (background process, the
                    same command) polled every 100 ms like the module's QTimer -> apply_result
                    (segmentation with 3D surface, overlay volumes, slice views) -> done
The methods alternate (a, b, c, a, b, c, ...) so that load from other programs hits all alike;
medians are reported with the ratios module/command (target <= 1.2) and module/command+att.

    python benchmarks/benchmark_slicer_logic.py                         # real CT, CPU, bundled model
    python benchmarks/benchmark_slicer_logic.py --device cuda --repeats 5
    python benchmarks/benchmark_slicer_logic.py --model tiny            # random tiny model: overhead only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "AttentionUNetSegment"))
DEFAULT_CT = REPO.parent / "shared" / "data" / "totalsegmentator-example" / "ct.nii.gz"


def _model_path(choice: str, folder: Path) -> Path:
    if choice == "tiny":
        from AttentionUNetSegmentLib.files.modelfile import save_model, tiny_test_model

        path = folder / "tiny.pt"
        save_model(path, *tiny_test_model(seed=0))
        return path
    if choice == "default":
        from AttentionUNetSegmentLib.files.modelfile import default_model_path

        path = default_model_path()
        if not path.exists():
            sys.exit(f"{path}: the bundled default model is missing; pass --model FILE or --model tiny")
        return path
    return Path(choice)


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "AttentionUNetSegment"), env.get("PYTHONPATH", "")])
    return env


def time_command(ct: Path, model: Path, device: str, overlap: float, folder: Path, attention: bool) -> float:
    out = folder / ("cmd-att" if attention else "cmd")
    out.mkdir(exist_ok=True)
    command = [sys.executable, "-m", "AttentionUNetSegmentLib", "segment", str(ct), "-o", str(out / "labels.nrrd"),
               "--model", str(model), "--device", device, f"--overlap={overlap}", "--progress", "none"]
    if attention:
        command += ["--attention-dir", str(out / "attention"), "--attention-format", "nrrd"]
    start = time.perf_counter()
    subprocess.run(command, check=True, env=_environment(), stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


class SceneSetup:
    """A scene as Slicer has it: CT loaded by the volumes logic, Red/Yellow/Green slice views."""

    def __init__(self, ct: Path):
        import slicer

        self.scene = slicer.vtkMRMLScene()
        slicer.mrmlScene = self.scene
        self.color_logic = slicer.vtkMRMLColorLogic()
        self.color_logic.SetMRMLScene(self.scene)
        app_logic = slicer.vtkSlicerApplicationLogic()
        app_logic.SetMRMLScene(self.scene)
        app_logic.SetModuleLogic("Colors", self.color_logic)
        volumes_logic = slicer.vtkSlicerVolumesLogic()
        volumes_logic.SetMRMLApplicationLogic(app_logic)
        volumes_logic.SetMRMLScene(self.scene)
        self.segmentations_logic = slicer.vtkSlicerSegmentationsModuleLogic()
        self.segmentations_logic.SetMRMLScene(self.scene)
        slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(self.scene, True)
        self.slice_logics = []
        for name in ("Red", "Yellow", "Green"):
            logic = slicer.vtkMRMLSliceLogic()
            logic.SetMRMLScene(self.scene)
            logic.AddSliceNode(name)
            self.slice_logics.append(logic)
        self.volume = volumes_logic.AddArchetypeVolume(str(ct), "CT")
        for logic in self.slice_logics:
            logic.GetSliceCompositeNode().SetBackgroundVolumeID(self.volume.GetID())


def time_module(setup: SceneSetup, model: Path, device: str, overlap: float, poll_s: float = 0.1) -> dict:
    from AttentionUNetSegmentLib.scene.display import slice_view_rgba
    from AttentionUNetSegmentLib.scene.job import RUNNING, SUCCEEDED
    from AttentionUNetSegmentLib.scene.logic import AttentionUNetSegmentSceneLogic

    logic = AttentionUNetSegmentSceneLogic(setup.scene, setup.segmentations_logic)
    start = time.perf_counter()                                       # "Segment" pressed
    job = logic.create_job(setup.volume, model_path=model, device=device, overlap=overlap,
                           python_executable=sys.executable)
    job.start()
    while job.poll().state == RUNNING:                          # the module's QTimer
        time.sleep(poll_s)
    status = job.poll()
    if status.state != SUCCEEDED:
        raise RuntimeError(status.error)
    finished = time.perf_counter()
    applied = logic.apply_result(setup.volume, job.result())
    for slice_logic in setup.slice_logics:                           # the views draw the new layers
        slice_view_rgba(slice_logic)
    shown = time.perf_counter()
    job.cleanup()
    return {"total": shown - start, "job": finished - start, "apply_and_draw": shown - finished,
            "volume_ml": applied.volume_ml, "device": applied.summary.get("device"),
            "command_seconds": applied.summary.get("seconds", {})}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ct", type=Path, default=DEFAULT_CT, help="CT file (default: the real example CT)")
    parser.add_argument("--model", default="default", help="model file, 'default' (bundled) or 'tiny'")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "mps", "auto"))
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="benchmark_slicer_logic-") as tmp:
        folder = Path(tmp)
        model = _model_path(args.model, folder)
        setup = SceneSetup(args.ct)
        dims = setup.volume.GetImageData().GetDimensions()
        print(f"CT {args.ct.name}: {dims[0]}x{dims[1]}x{dims[2]} voxels; model {model.name}; device {args.device}; "
              f"overlap {args.overlap}; {args.repeats} repeats; python {platform.python_version()}")
        # Warm-up (file caches, first torch import): one of each, not counted.
        time_command(args.ct, model, args.device, args.overlap, folder, attention=False)
        time_module(setup, model, args.device, args.overlap)
        command, command_att, module, detail = [], [], [], []
        for _ in range(args.repeats):
            command.append(time_command(args.ct, model, args.device, args.overlap, folder, attention=False))
            command_att.append(time_command(args.ct, model, args.device, args.overlap, folder, attention=True))
            run = time_module(setup, model, args.device, args.overlap)
            module.append(run["total"])
            detail.append(run)

    med = {name: statistics.median(values) for name, values in
           (("command", command), ("command+attention", command_att), ("module", module))}
    ratio = med["module"] / med["command"]
    ratio_att = med["module"] / med["command+attention"]
    print(f"{'':28s}{'median s':>10s}   runs")
    for name, values in (("segment command", command), ("segment + --attention-dir", command_att),
                         ("module: Segment -> shown", module)):
        print(f"{name:28s}{statistics.median(values):10.2f}   " + ", ".join(f"{v:.2f}" for v in values))
    print(f"  of which job (process)    {statistics.median(r['job'] for r in detail):10.2f}")
    print(f"  of which apply + draw     {statistics.median(r['apply_and_draw'] for r in detail):10.2f}")
    print(f"ratio module / command               {ratio:.3f}  (target <= 1.2: {'met' if ratio <= 1.2 else 'NOT met'})")
    print(f"ratio module / command+attention     {ratio_att:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"medians": med, "ratio": ratio, "ratio_attention": ratio_att,
                                         "command": command, "command_attention": command_att,
                                         "module": module, "detail": detail, "device": args.device,
                                         "overlap": args.overlap, "ct": str(args.ct), "model": str(model)},
                                        indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
