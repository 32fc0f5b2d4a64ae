"""What rank 0 tells the user while training: a per-epoch bar, epoch lines, or a callback."""

from __future__ import annotations

import sys
import time

from ..core.progress import ProgressCallback


class Reporter:
    """Rank 0's output: a per-epoch bar on a terminal (loss, patches/s), epoch lines, or a
    caller's (fraction, message) callback, throttled so reporting never slows training."""

    def __init__(self, progress: ProgressCallback | bool | None, enabled: bool):
        self.callback = progress if callable(progress) else None
        self.terminal = progress is True and enabled
        self.enabled = enabled and progress not in (None, False)
        self.bar = None
        self.last = 0.0

    def start_bar(self) -> None:
        if self.terminal and sys.stderr.isatty():
            from ..core.progress import TerminalProgress
            self.bar = TerminalProgress(sys.stderr)

    def step(self, fraction_epoch: float, fraction_total: float, message: str) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if fraction_epoch < 1.0 and now - self.last < 0.2:
            return
        self.last = now
        if self.bar is not None:
            self.bar(fraction_epoch, message)
        if self.callback is not None:
            self.callback(fraction_total, message)

    def line(self, message: str, fraction_total: float | None = None) -> None:
        if not self.enabled:
            return
        if self.terminal:
            print(message, file=sys.stderr, flush=True)
        if self.callback is not None and fraction_total is not None:
            self.callback(fraction_total, message)
