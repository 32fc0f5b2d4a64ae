"""AttentionUNetSegment: pancreas segmentation on CT with a 3D Attention U-Net (Oktay et al. 2018).

Sub-packages; arrows point toward `core` (docs/architecture.md; Testing/Python/import_rules.py
holds the rule and a test checks it):
- `core`: what runs when Segment is pressed (network, inference, preprocessing, geometry,
  postprocessing, devices, options, model description, pipeline); imports nothing else of the package.
- `files`: CT reading, file formats, atomic output writing, .seg.nrrd and model files, Resources/.
- `service`: segment a case and export it, for every caller; the Slicer <-> engine contract.
- `evaluation`, `phantom`, `reports` (figures, demo), `training`: the tools around the model.
- `scene`: scene-side logic of the 3D Slicer module (Slicer's `slicer` and vtk, never qt).
- `cli`: the `attention-unet-segment` command line.
Arrays are in SimpleITK/Slicer order (z, y, x) throughout.
"""

__version__ = "0.1.0"
