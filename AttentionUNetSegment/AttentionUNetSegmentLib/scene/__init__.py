"""Scene-side logic of the 3D Slicer module: imports Slicer's `slicer` module and vtk, never qt,
so it runs and is tested under the slicer-core wheel. (Named `scene`, not `slicer`, so that it
cannot be mistaken for Slicer's own `slicer` module, which its files import.)"""
