"""Files on disk: CT reading with validation, atomic output writing, Slicer .seg.nrrd files
and self-describing model files. Uses only the core."""
