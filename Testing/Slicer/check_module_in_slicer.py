"""The module in a real 3D Slicer, checked by a maintainer: what this project's CI cannot run.

    Slicer --no-main-window --python-script Testing/Slicer/check_module_in_slicer.py [-- --ct CT] [--model M]
    Slicer --python-script Testing/Slicer/check_module_in_slicer_gui.py            (the same, watched)

Loads a CT (the file given, else a synthetic CT), then through the module's own widget, as a user
does: Segment; the click mode; Cancel (returns at once, the process tree and the work folder go);
Close Scene and three CTs loaded again (all offered as input); two CTs in turn (one result each);
another model (the earlier model's segments do not stay stale). Prints one PASS/FAIL line per
check and a summary, and exits with 0 only when every check passed. Dialogs are answered
automatically (and recorded) so that nothing waits for a click; the PyTorch install is never
started from here (a missing PyTorch is a FAIL that says so).

Without --model, the bundled default model is used; the model switch needs --model and
--other-model (two whole-CT models, e.g. from `attention-unet-segment train`), else it is skipped. The click mode is driven in one function, `use_click_mode`, the one place to adapt when
the click mode changes.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback

import slicer
import vtk

MODULE = "AttentionUNetSegment"


class Check:
    """The report: one line per check, and the dialogs the module showed."""

    def __init__(self, log=print):
        self.results: list[tuple[str, bool, str]] = []
        self.dialogs: list[str] = []
        self.log = log

    def __call__(self, name: str, ok: bool, detail: str = "") -> bool:
        self.results.append((name, bool(ok), detail))
        self.log(f"{'PASS' if ok else 'FAIL'}  {name}" + (f"  ({detail})" if detail else ""))
        return bool(ok)

    def run(self, name: str, step, *args) -> None:
        """A step that raises is one FAIL with its last line, and the next step still runs."""
        try:
            step(self, *args)
        except Exception as error:  # noqa: BLE001 - the report says what failed, then goes on
            self(name, False, f"{type(error).__name__}: {error}")
            self.log(traceback.format_exc())

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(ok for _, ok, _ in self.results)

    def summary(self) -> str:
        failed = [name for name, ok, _ in self.results if not ok]
        return (f"{len(self.results) - len(failed)}/{len(self.results)} checks passed"
                + (f"; failed: {', '.join(failed)}" if failed else ""))


class Harness:
    """The module's widget in this Slicer and how to wait for it; `process_events` is Slicer's event
    loop (tests pass their own)."""

    def __init__(self, widget, process_events, pause_s: float = 0.0):
        self.widget, self.process_events, self.pause_s = widget, process_events, pause_s
        self.model = ("", "")                 # (model, modelPath) parameters of "the model"

    @property
    def parameters(self):
        return self.widget._parameterNode

    def settle(self, seconds: float = 0.0) -> None:
        end = time.perf_counter() + max(seconds, self.pause_s)
        while True:
            self.process_events()
            if time.perf_counter() >= end:
                return
            time.sleep(0.02)

    def wait_for_job(self, timeout_s: float = 600.0) -> bool:
        start = time.perf_counter()
        while self.widget._job is not None:
            self.process_events()
            self.widget.onJobTimer()          # the module's QTimer does this too; twice is harmless
            time.sleep(0.05)
            if time.perf_counter() - start > timeout_s:
                return False
        self.settle()
        return True


def answer_dialogs_automatically(check: Check) -> None:
    """Slicer's dialogs are modal: record them and answer, so the script never waits. PyTorch is
    not installed from here (that is the manual checklist's step)."""
    def confirm(text, **kwargs):
        check.dialogs.append(text)
        return "PyTorch" not in text          # "segment anyway?" yes; "install PyTorch?" no

    def refuse(text, **kwargs):                # "restart Slicer now?" no
        check.dialogs.append(text)
        return False

    def note(text, **kwargs):
        check.dialogs.append(text)

    slicer.util.confirmOkCancelDisplay = confirm
    slicer.util.confirmYesNoDisplay = refuse
    slicer.util.errorDisplay = note


def load_ct(path: str | None, name: str):
    if path:
        return slicer.util.loadVolume(path, {"name": name})
    from AttentionUNetSegmentLib.scene.selftest import add_synthetic_ct

    node = add_synthetic_ct(slicer.mrmlScene)
    node.SetName(name)
    return node


def segment(check: Check, h: Harness, volume, label: str, **settings) -> None:
    """Choose `volume` (and settings) and press Segment; the result must show."""
    p = h.parameters
    p.inputVolume = volume
    settings = {"model": h.model[0], "modelPath": h.model[1], **settings}  # a new scene: a new parameter node
    for key, value in settings.items():
        setattr(p, key, value)
    h.widget.onSegmentButton()
    finished = h.wait_for_job()
    ok = finished and "Pancreas:" in h.widget.ui.resultLabel.text
    check(label, ok, h.widget.ui.resultLabel.text if ok else h.widget.ui.statusLabel.text)


def use_click_mode(h: Harness, points_ras, timeout_s: float = 300.0) -> bool:
    """The click mode as a user uses it: press the click button, click include points on the CT,
    press Done. The one place that knows how the click mode is driven (adapt it when the click
    mode changes): each point is added to the node the mode places into, as the markups widget's
    PlacePoint does, and answered before the next. False if an answer did not come in time."""
    widget = h.widget
    widget.ui.clickToSegmentButton.checked = True
    if not widget._clickMode.active:                  # no Qt signal here (stand-ins): the slot itself
        widget.onClickToSegmentToggled(True)
    mode = widget._clickMode
    if not mode.active:
        return False
    for count, point in enumerate(points_ras, start=1):
        mode.points.include_node.AddControlPoint(vtk.vtkVector3d(*point))
        if not _wait(h, lambda: f"Clicks: {count}." in widget.ui.resultLabel.text or not mode.active, timeout_s):
            return False
    widget.onDoneButton()
    return _wait(h, lambda: not mode.running, timeout_s)


def _wait(h: Harness, done, timeout_s: float) -> bool:
    start = time.perf_counter()
    while not done():
        h.process_events()
        h.widget.onClickTimer()                       # the module's QTimer does this too
        time.sleep(0.05)
        if time.perf_counter() - start > timeout_s:
            return False
    h.settle()
    return True


def centre_ras(volume) -> list[float]:
    bounds = [0.0] * 6
    volume.GetRASBounds(bounds)
    return [(bounds[0] + bounds[1]) / 2, (bounds[2] + bounds[3]) / 2, (bounds[4] + bounds[5]) / 2]


def offered_as_input(h: Harness) -> list[str]:
    from AttentionUNetSegmentLib.scene.roles import collection_items

    hidden = set(h.widget.ui.inputVolumeSelector.sortFilterProxyModel().hiddenNodeIDs)
    return [node.GetName() for node in collection_items(slicer.mrmlScene.GetNodesByClass("vtkMRMLScalarVolumeNode"))
            if node.GetID() not in hidden]


def check_segment(check, h, ct):
    segment(check, h, ct, "Segment shows a result", device="auto")
    overlays = h.widget.logic.overlay_nodes_for(ct)
    check("attention overlays made and not offered as input", overlays and
          not set(n.GetName() for n in overlays.values()) & set(offered_as_input(h)), str(sorted(overlays)))


def check_click_mode(check, h, ct):
    p = h.parameters
    p.inputVolume, p.model, p.modelPath = ct, "", ""   # the bundled default: the click model answers
    answered = use_click_mode(h, [centre_ras(ct)])
    segmentation = h.widget.logic.segmentation_node_for(ct)
    check("click mode: a click gives the segment, Done ends the worker", answered and segmentation is not None
          and "Clicks: 1." in h.widget.ui.resultLabel.text and not h.widget._clickMode.running,
          h.widget.ui.resultLabel.text or h.widget.ui.statusLabel.text)


def check_cancel(check, h, ct):
    h.parameters.inputVolume, h.parameters.overlap = ct, 0.75
    h.widget.onSegmentButton()
    job = h.widget._job
    h.settle(0.3)                                     # PythonSlicer is still loading PyTorch
    if not check("a run to cancel is running", job is not None and h.widget._job is job):
        return
    start = time.perf_counter()
    h.widget.onSegmentButton()                        # the button says Cancel now
    seconds = time.perf_counter() - start
    check("Cancel returns within a second", seconds < 1.0, f"{seconds:.2f} s")
    stopped = job is not None and job.wait_stopped(15)
    process_ended = job is not None and (job.process is None or job.process.poll() is not None)
    check("Cancel ends the process tree and deletes the work folder",
          stopped and process_ended and not job.work_dir.exists(), str(job.work_dir if job else ""))
    h.parameters.overlap = 0.5


def check_close_scene(check, h, args):
    slicer.mrmlScene.Clear(0)
    h.settle(0.5)
    names = ["CT A", "CT B", "CT C"]
    for name in names:
        load_ct(args.ct, name)
    h.settle(0.5)
    check("after Close Scene, new CTs are offered as input", offered_as_input(h) == names, str(offered_as_input(h)))


def check_switch_cts(check, h):
    from AttentionUNetSegmentLib.scene.roles import collection_items

    first, second = collection_items(slicer.mrmlScene.GetNodesByClass("vtkMRMLScalarVolumeNode"))[:2]
    segment(check, h, first, "first CT segmented")
    segment(check, h, second, "second CT segmented")
    a, b = h.widget.logic.segmentation_node_for(first), h.widget.logic.segmentation_node_for(second)
    check("one result per CT", a is not None and b is not None and a is not b
          and h.parameters.outputSegmentation is b, f"{a.GetName() if a else None} / {b.GetName() if b else None}")


def check_switch_models(check, h, other_model):
    if other_model is None:
        check.log("SKIP  switch models (one model only: give --model and --other-model)")
        return
    volume = h.parameters.inputVolume
    segment(check, h, volume, "another model segments", model=other_model[0], modelPath=other_model[1])
    written = h.widget.logic.segmentation_node_for(volume).GetSegmentation()
    from AttentionUNetSegmentLib.scene.roles import WRITTEN_BY_TAG

    models = set()
    for index in range(written.GetNumberOfSegments()):
        value = vtk.reference("")
        if written.GetNthSegment(index).GetTag(WRITTEN_BY_TAG, value):
            models.add(str(value))
    check("no segment of the earlier model is left stale", len(models) == 1, str(sorted(models)))


def models_to_use(args):
    """(model, modelPath) parameter pairs for "the model" and "another model" (None: no switch):
    the given files, else the bundled default model. (The bundled click model is not a whole-CT
    model, so it is not used as the other model.)"""
    from AttentionUNetSegmentLib.scene.models import CUSTOM_MODEL

    model = (CUSTOM_MODEL, args.model) if args.model else ("", "")
    return model, ((CUSTOM_MODEL, args.other_model) if args.other_model else None)


def run_checks(args, widget, process_events, log=print) -> Check:
    check = Check(log)
    answer_dialogs_automatically(check)
    h = Harness(widget, process_events, pause_s=args.pause)
    from AttentionUNetSegmentLib.scene import pytorch_install

    if not check("PyTorch installed for the module", pytorch_install.torch_problem() is None,
                 "press Segment once and accept the install, or see docs/slicer.md"):
        return check
    h.model, other_model = models_to_use(args)
    ct = load_ct(args.ct, "CT")
    h.settle(0.5)
    check.run("Segment", check_segment, h, ct)
    check.run("click mode", check_click_mode, h, ct)
    check.run("Cancel", check_cancel, h, ct)
    check.run("Close Scene", check_close_scene, h, args)
    check.run("switch CTs", check_switch_cts, h)
    check.run("switch models", check_switch_models, h, other_model)
    log(check.summary())
    if check.dialogs:
        log("dialogs shown (answered automatically):\n  " + "\n  ".join(d.splitlines()[0] for d in check.dialogs))
    return check


def parse(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ct", help="a CT file (default: a small synthetic CT)")
    parser.add_argument("--model", help="a model file (default: the bundled models)")
    parser.add_argument("--other-model", help="a second model file for the model switch")
    parser.add_argument("--pause", type=float, default=0.0, help="seconds to pause after each step (to watch)")
    parser.add_argument("--keep-open", action="store_true", help="do not exit Slicer at the end")
    return parser.parse_args(argv)


def main(argv=None, pause_s: float = 0.0, keep_open: bool = False) -> None:
    args = parse(sys.argv[1:] if argv is None else argv)
    args.pause = max(args.pause, pause_s)
    slicer.util.selectModule(MODULE)
    widget = slicer.util.getModuleWidget(MODULE)
    check = run_checks(args, widget, slicer.app.processEvents)
    if not (keep_open or args.keep_open):
        slicer.util.exit(0 if check.passed else 1)


if __name__ == "__main__":
    main()
