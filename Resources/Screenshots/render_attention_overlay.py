#!/usr/bin/env python
"""Render Resources/Screenshots/attention-overlay.png headless, the way the Slicer module shows it.

No Slicer application is needed: the CT is loaded into a real MRML scene (slicer-core wheel), the
Slicer module's scene logic runs the `segment` command in a background process and builds the
segmentation and attention overlay nodes, and every panel is what Slicer's own slice logic
(reslice and blend: CT background, attention foreground with its colour table, threshold and
opacity, segment outline as label layer) produces for a Red (axial) slice view. The panels are
arranged with titles and a colour bar by `reports.figures.image_panels_png` (matplotlib).

    python Resources/Screenshots/render_attention_overlay.py                 # phantom, bundled model
    python Resources/Screenshots/render_attention_overlay.py --ct CT.nii.gz --model model.pt
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "AttentionUNetSegment"))

import SimpleITK as sitk  # noqa: E402
import slicer  # noqa: E402
import vtk  # noqa: E402
from AttentionUNetSegmentLib.reports import figures  # noqa: E402
from AttentionUNetSegmentLib.scene.display import slice_view_rgba  # noqa: E402
from AttentionUNetSegmentLib.scene.job import SUCCEEDED  # noqa: E402
from AttentionUNetSegmentLib.scene.logic import AttentionUNetSegmentSceneLogic  # noqa: E402
from AttentionUNetSegmentLib.scene.roles import MAX_GATE, OVERLAY_LOWER_THRESHOLD  # noqa: E402
from AttentionUNetSegmentLib.scene.volumes import image_to_volume_node  # noqa: E402


def _scene():
    scene = slicer.vtkMRMLScene()
    slicer.mrmlScene = scene
    color_logic = slicer.vtkMRMLColorLogic()
    color_logic.SetMRMLScene(scene)
    segmentations_logic = slicer.vtkSlicerSegmentationsModuleLogic()
    segmentations_logic.SetMRMLScene(scene)
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene, True)
    slice_logic = slicer.vtkMRMLSliceLogic()
    slice_logic.SetMRMLScene(scene)
    slice_logic.AddSliceNode("Red")
    return scene, color_logic, segmentations_logic, slice_logic


def _ct_image(args) -> tuple[sitk.Image, str]:
    if args.ct:
        return sitk.ReadImage(str(args.ct)), Path(args.ct).name
    from AttentionUNetSegmentLib.phantom.generator import generate_case

    case = generate_case(seed=args.seed, spacing_xyz=(1.25, 1.25, 2.5), fov_mm=320.0, z_extent_mm=150.0,
                         orientation="LPS")
    return case.ct, f"synthetic phantom {args.seed}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ct", type=Path, help="CT file (default: a synthetic abdominal phantom)")
    parser.add_argument("--seed", type=int, default=11, help="phantom seed (without --ct)")
    parser.add_argument("--model", type=Path, help="model file (default: the bundled model)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--panel", type=int, default=360, help="panel size in pixels")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("attention-overlay.png"))
    args = parser.parse_args()

    from AttentionUNetSegmentLib.files.modelfile import default_model_path

    model = args.model or default_model_path()
    scene, _, segmentations_logic, slice_logic = _scene()
    image, source = _ct_image(args)
    ct = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CT")
    image_to_volume_node(image, ct)
    ct.CreateDefaultDisplayNodes()
    display = ct.GetDisplayNode()
    display.SetAndObserveColorNodeID("vtkMRMLColorTableNodeGrey")
    display.AutoWindowLevelOff()
    display.SetWindowLevel(400, 40)            # Slicer's "CT abdomen" preset
    display.SetInterpolate(1)

    logic = AttentionUNetSegmentSceneLogic(scene, segmentations_logic)
    with tempfile.TemporaryDirectory() as work:
        job = logic.create_job(ct, model_path=model, device=args.device, overlap=args.overlap,
                               python_executable=sys.executable, work_root=work).start()
        status = job.wait()
        if status.state != SUCCEEDED:
            sys.exit(f"segmentation failed: {status.error}")
        applied = logic.apply_result(ct, job.result())
        job.cleanup()

    # The segment as the label layer, drawn as an outline (what Slicer shows in 2D).
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "pancreas outline")
    ids = vtk.vtkStringArray()
    ids.InsertNextValue("Pancreas")
    segmentations_logic.ExportSegmentsToLabelmapNode(applied.segmentation_node, ids, labelmap, ct)
    labels = slicer.util.arrayFromVolume(labelmap)
    if not labels.any():
        sys.exit("the model found no pancreas on this CT; choose another --ct/--seed")

    # Red slice through the centre of the pancreas, square pixels, field of view around the body.
    slice_node = slice_logic.GetSliceNode()
    slice_node.SetOrientation("Axial")
    slice_node.SetDimensions(args.panel, args.panel, 1)
    slice_node.SetUseLabelOutline(True)
    slice_logic.FitSliceToAll(args.panel, args.panel)
    k, j, i = np.argwhere(labels).mean(axis=0)
    ijk_to_ras = vtk.vtkMatrix4x4()
    ct.GetIJKToRASMatrix(ijk_to_ras)
    centre = ijk_to_ras.MultiplyPoint((i, j, k, 1.0))[:3]
    slice_node.JumpSliceByCentering(*centre)
    fov = slice_node.GetFieldOfView()
    side = 0.62 * max(fov[0], fov[1])          # zoom in on the upper abdomen
    slice_node.SetFieldOfView(side, side, fov[2])
    slice_node.JumpSliceByCentering(*centre)
    composite = slice_logic.GetSliceCompositeNode()
    composite.SetBackgroundVolumeID(ct.GetID())
    composite.SetLabelVolumeID(labelmap.GetID())
    composite.SetLabelOpacity(1.0)

    panels, titles = [], []
    composite.SetForegroundVolumeID(None)
    panels.append(slice_view_rgba(slice_logic))
    titles.append("CT + pancreas segment")
    for gate, title in [(MAX_GATE, "attention: max over gates"), ("gate2", "gate 2 (1/2 res)"),
                        ("gate3", "gate 3 (1/4 res)"), ("gate4", "gate 4 (1/8 res)")]:
        if gate in applied.overlay_nodes:
            logic.show_overlay(ct, gate, 0.6)
            panels.append(slice_view_rgba(slice_logic))
            titles.append(title)
    volume = ", ".join(f"{name} {ml:.0f} mL" for name, ml in applied.volume_ml.items())
    caption = f"{source}, {volume}"
    # Colour bar greyed below the display threshold: there the overlay is transparent.
    figures.image_panels_png(args.out, panels, titles, caption=caption,
                             colorbar_label=f"attention coefficient (transparent below {OVERLAY_LOWER_THRESHOLD:g})",
                             transparent_below=OVERLAY_LOWER_THRESHOLD)
    print(f"wrote {args.out} ({', '.join(titles)}); {volume}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
