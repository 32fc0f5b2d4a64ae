"""The checks of check_module_in_slicer.py with Slicer's main window, slowly enough to watch
(1 s after each step), and Slicer left open at the end:

    Slicer --python-script Testing/Slicer/check_module_in_slicer_gui.py [-- --ct CT] [--model M]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(globals().get("__file__", sys.argv[0])).resolve().parent))

import check_module_in_slicer  # noqa: E402

check_module_in_slicer.main(pause_s=1.0, keep_open=True)
