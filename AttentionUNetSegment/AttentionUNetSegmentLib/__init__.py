"""AttentionUNetSegment core: pancreas segmentation on CT with a 3D Attention U-Net.

Pure Python (PyTorch, NumPy, SimpleITK). Never imports slicer/qt/ctk/vtk except in
`slicer_scene.py`, which is the scene-side logic used by the 3D Slicer module.
Arrays are in SimpleITK/Slicer order (z, y, x) throughout; see docs/architecture.md.
"""

__version__ = "0.1.0"
