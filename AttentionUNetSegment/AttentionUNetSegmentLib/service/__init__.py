"""The segmentation service: "segment a case and export it", one entry point for every caller.

The command line (`segment`, single case and cohort), Slicer's in-process path and any other
caller (an interactive worker) build a request from `options.py`, run it through `segmenter.py`
(cohorts through `cohort.py`), and `export.py` turns a prediction into files on the CT's geometry,
all or nothing. `contract.py` is what the Slicer module and the engine agree on: the flags and
files of a background job, the progress lines, the summary and the exit codes. Uses only core
and files; together with them it is the runtime that Slicer ships.
"""
