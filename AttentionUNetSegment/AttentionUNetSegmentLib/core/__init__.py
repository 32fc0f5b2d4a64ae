"""The runtime core: what runs when a radiologist presses Segment.

Network, sliding-window inference, CT preprocessing and its exact inverse, geometry,
postprocessing, device and precision policy, the options of a run (each default once), the model
description and the pipeline that joins them. Imports nothing else of this package (and never slicer, qt, vtk, training or phantom code).
"""
