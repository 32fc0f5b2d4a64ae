"""Progress with the `(fraction, message)` callback signature used by the core, and the bar
people see. (The JSON lines programs read are service/contract.py's: a protocol with the Slicer
module.)
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Optional, TextIO

#: What the core reports progress to: (fraction 0..1 of the whole run, a short message).
ProgressCallback = Callable[[float, str], None]
#: Asked between steps; True stops the run with core.errors.CancelledError.
CancelCallback = Callable[[], bool]


class TerminalProgress:
    """`[#######.....]  58%  Sliding window 12/21  0:14` redrawn in place on a terminal."""

    def __init__(self, stream: Optional[TextIO] = None, width: int = 30, min_interval_s: float = 0.1):
        # Looked up per instance: sys.stderr may be replaced after import (tests, GUIs, redirects).
        stream = stream or sys.stderr
        self.stream = stream
        self.width = width
        self.min_interval_s = min_interval_s
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._interactive = hasattr(stream, "isatty") and stream.isatty()
        self._last_stage: tuple[str, int] = ("", -1)

    def __call__(self, fraction: float, message: str) -> None:
        now = time.perf_counter()
        fraction = min(max(fraction, 0.0), 1.0)
        if self._interactive:
            # Redraw at most every min_interval_s so printing never slows the work down.
            if fraction < 1.0 and now - self._last_draw < self.min_interval_s:
                return
            filled = int(round(self.width * fraction))
            elapsed = int(now - self.start)
            line = (f"\r[{'#' * filled}{'.' * (self.width - filled)}] {fraction * 100:5.1f}%  "
                    f"{message[:50]:<50} {elapsed // 60}:{elapsed % 60:02d}")
            self.stream.write(line)
            if fraction >= 1.0:
                self.stream.write("\n")
        else:
            # Logs and CI: a line per stage and per 10 %, not one per window.
            stage = (message.split()[0] if message else "", int(fraction * 10))
            if stage == self._last_stage:
                return
            self.stream.write(f"{fraction * 100:5.1f}%  {message}\n")
            self._last_stage = stage
        self.stream.flush()
        self._last_draw = now
