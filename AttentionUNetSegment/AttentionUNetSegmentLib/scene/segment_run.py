"""The module's Segment run, without Qt: the background job on the whole input CT, its progress,
and its result put into the scene, as the module shows them.

    prepare(parameters) -> the job for the parameter node's CT, model, device and overlap (not
                           started; InputError or PythonSlicerNotFound when it cannot be made)
    start(job, CT)      -> the job started: the first status line (the CT's 4D frame said, else
                           "Starting..."), or one line of error when its process cannot start
    poll(parameters)    (the module's QTimer) -> None when no job runs; the percent and status
                           line while it runs; once it has ended, its result applied to the
                           scene (logic.apply_result, under `busy`, e.g. a wait cursor), or one
                           line of error with the job's log as details
    cancel()            -> the job stopped (returns at once; its process tree ends in the background)
    segment_button(...) -> the Segment button's text, state and tooltip (Cancel while anything runs)

The module file owns the timer, the progress bar and the dialogs; the job that ended comes back
in the update and is cleaned up (its work folder deleted) once the module has shown it.
Imported on first use: it loads `volumes` (numpy, SimpleITK).
"""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Optional

from .job import FAILED, RUNNING, SUCCEEDED, SegmentationJob
from .logic import AppliedResult
from .models import selected_model_path
from .sequences import frame_note
from .volumes import check_input_volume

from .i18n import tr as _  # Slicer's translation, in this file's context


@dataclass
class RunUpdate:
    """What one poll gives the module to show."""

    percent: int                                # the progress bar
    running: bool = False
    status: str = ""                            # the status line while it runs
    applied: Optional[AppliedResult] = None     # the result, in the scene
    seconds: float = 0.0                        # from the start to the result shown
    volume_node: Any = None                     # the CT the result belongs to
    error: str = ""                             # one line for the user
    details: str = ""                           # the job's log, for the dialog's details
    job: Optional[SegmentationJob] = None       # the job that ended: job.cleanup() once shown


class SegmentRun:
    """One Segment run at a time of the module; `logic` is the scene logic (create_job, apply_result)."""

    def __init__(self, logic):
        self.logic = logic
        self.job: Optional[SegmentationJob] = None       # the running job, None when none runs
        self.volume_node, self.started = None, 0.0

    def prepare(self, parameters, work_root: Optional[str] = None) -> tuple[SegmentationJob, Any]:
        """(job, CT) for the parameter node's choices: the CT checked first, then the model."""
        volume = parameters.inputVolume if parameters else None
        check_input_volume(volume)
        model_path = selected_model_path(parameters.model, parameters.modelPath)
        return self.logic.create_job(volume, model_path=model_path, device=parameters.device,
                                     overlap=parameters.overlap, work_root=work_root), volume

    def start(self, job: SegmentationJob, volume_node) -> tuple[str, str]:
        """Start the job: (the first status line, ""), or ("", one line) when its process cannot start."""
        try:
            job.start()
        except OSError as error:
            return "", _("Could not start the segmentation process: {error}").format(error=error)
        self.job, self.volume_node, self.started = job, volume_node, time.perf_counter()
        return frame_note(volume_node) or _("Starting..."), ""

    def poll(self, parameters, busy: Callable[[], ContextManager] = nullcontext) -> Optional[RunUpdate]:
        """The job's progress; once it has ended, its result applied with the parameter node's
        output segmentation, gate and opacity (see the module docstring)."""
        job = self.job
        if job is None:
            return None
        status = job.poll()  # also writes the job's log lines, here on the polling (GUI) thread
        percent = int(round(100 * status.fraction))
        if status.state == RUNNING:
            return RunUpdate(percent, True, _("{message} ({seconds:.0f} s)").format(message=status.message,
                                                                                    seconds=status.elapsed_s))
        self.job = None
        if status.state == FAILED:
            return RunUpdate(percent, error=status.error, details="\n".join(job.log_lines), job=job)
        if status.state != SUCCEEDED:
            return RunUpdate(percent, job=job)
        try:
            with busy():
                applied = self.logic.apply_result(self.volume_node, job.result(),
                                                  segmentation_node=parameters.outputSegmentation,
                                                  gate=parameters.gate, opacity=parameters.opacity)
        except Exception as error:  # noqa: BLE001 - shown in the module, details in the log
            logging.exception("AttentionUNetSegment: applying the result failed")
            return RunUpdate(percent, error=_("Could not show the result: {error}").format(error=error), job=job)
        return RunUpdate(percent, applied=applied, seconds=time.perf_counter() - self.started,
                         volume_node=self.volume_node, job=job)

    @staticmethod
    def segment_button(running: bool, clicking: bool, have_input: bool) -> tuple[str, bool, str]:
        """The Segment button's (text, enabled, tooltip): Cancel while anything runs (a job, an install,
        the click worker computing); else Segment, with a CT chosen and the click mode off."""
        if running:
            return _("Cancel"), True, _("Stop the segmentation; the scene is left as it was.")
        return _("Segment"), have_input and not clicking, (
            _("Press Done to leave the click mode first.") if clicking else
            _("Segment the pancreas on the whole CT.") if have_input else _("Select an input CT first."))

    def cancel(self) -> bool:
        """Stop the running job (at once): False when none ran."""
        job, self.job = self.job, None
        if job is not None:
            job.cancel()
        return job is not None
