"""Scene-side logic of the 3D Slicer module: imports slicer and vtk, never qt, so it runs and is
tested under the slicer-core wheel."""
