"""AttentionUNetSegment: pancreas segmentation on CT with a 3D Attention U-Net (Oktay et al. 2018).

Sub-packages, each importing only those listed before it (docs/architecture.md; a test checks):
- `core`: what runs when Segment is pressed (network, inference, preprocessing, geometry,
  postprocessing, devices, model description, pipeline); imports nothing else of the package.
- `files`: CT reading, atomic output writing, .seg.nrrd and model files.
- `evaluation`, `phantom`, `reports` (figures, demo), `training`: the tools around the model.
- `scene`: scene-side logic of the 3D Slicer module (Slicer's `slicer` and vtk, never qt).
- `cli`: the `attention-unet-segment` command line.
Arrays are in SimpleITK/Slicer order (z, y, x) throughout.
"""

__version__ = "0.1.0"
