"""AttentionUNetSegment: one-click pancreas segmentation on CT with a 3D Attention U-Net, with
each attention gate's coefficients shown as colour overlays on the CT slices.

Thin Slicer wiring only: Module, parameter node, Widget, Logic, self-test. Everything else is in
`AttentionUNetSegmentLib.scene` (no Qt there; tested headless against a real MRML scene). The
computation is the `segment` command, run in a background process so Slicer stays usable.
PyTorch is never imported into Slicer's process by this module.
"""

import logging
import os
from typing import Annotated

import qt
import slicer
import vtk
from AttentionUNetSegmentLib.core.errors import InputError
from AttentionUNetSegmentLib.core.options import DEFAULT_OVERLAP
from AttentionUNetSegmentLib.files.resources import resources_folder
# Only light modules at load: Slicer imports every module file at start-up. The scene modules that
# load numpy and SimpleITK (volumes, selftest, interactive_mode, segment_run) are imported where first used.
from AttentionUNetSegmentLib.scene import device_probe, models, processes, pytorch_install
from AttentionUNetSegmentLib.scene.logic import AttentionUNetSegmentSceneLogic
from AttentionUNetSegmentLib.scene.roles import DEFAULT_OPACITY, MAX_GATE, NO_OVERLAY
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin


def resourcesDirectory() -> str:
    """Resources/ beside the module when installed, ../Resources in the source tree."""
    return str(resources_folder())


class AttentionUNetSegment(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Attention U-Net Segment")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["AttentionUNetSegment contributors"]
        self.parent.helpText = _("""
Pancreas segmentation on CT with a 3D Attention U-Net. Choose the CT and press <b>Segment</b>,
or press <b>Click on pancreas</b> and click on the pancreas in a slice view (with <b>Exclude</b>:
beside it); each click updates the segment; <b>Undo last click</b>, <b>Reset</b>, <b>Done</b>.
The result is a "Pancreas" segment (SNOMED CT 15776009) with its volume; the coefficients of
every attention gate are shown as a colour overlay on the CT slices.
<p><b>The default model is trained on synthetic phantoms and is not for clinical use.</b></p>
See the <a href="https://github.com/AttentionUNetSegment/SlicerAttentionUNetSegment#readme">documentation</a>.
""")
        self.parent.acknowledgementText = _("""
Method: O. Oktay, J. Schlemper, L. Le Folgoc, M. Lee, M. Heinrich, K. Misawa, K. Mori,
S. McDonagh, N. Y. Hammerla, B. Kainz, B. Glocker, D. Rueckert. "Attention U-Net: Learning Where
to Look for the Pancreas". Medical Imaging with Deep Learning (MIDL) 2018, arXiv:1804.03999.
The default model was trained on synthetic abdominal CT phantoms, for demonstration only;
not for clinical use.
""")
        # In the source tree the icon is at ../Resources (Slicer looks beside the module only).
        iconPath = os.path.join(resourcesDirectory(), "Icons", "AttentionUNetSegment.png")
        if os.path.isfile(iconPath):
            self.parent.icon = qt.QIcon(iconPath)


@parameterNodeWrapper
class AttentionUNetSegmentParameterNode:
    """Module state, saved with the scene.

    inputVolume: the CT. model: the file name of a bundled model ("" = the default) or "custom",
    then modelPath is the user's model file or folder. device: auto | cpu | cuda | mps.
    overlap: sliding-window overlap (quality). gate: overlay shown (a gate name, "max" or "none").
    opacity: overlay opacity. outputSegmentation: the result segmentation (re-used on re-runs).
    The click mode's points are found through the CT (scene/click_point.py), not kept here.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    model: str = ""
    modelPath: str = ""
    device: str = "auto"
    overlap: Annotated[float, WithinRange(0.0, 0.75)] = DEFAULT_OVERLAP
    gate: str = MAX_GATE
    opacity: Annotated[float, WithinRange(0.0, 1.0)] = DEFAULT_OPACITY
    outputSegmentation: vtkMRMLSegmentationNode


class AttentionUNetSegmentWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    CUSTOM_MODEL = models.CUSTOM_MODEL

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = self._parameterNode = self._parameterNodeGuiTag = None
        self._run = self._deviceProbe = self._clickMode = None
        self._installFlow = pytorch_install.InstallFlow(
            lambda question: slicer.util.confirmOkCancelDisplay(question, windowTitle=_("Install PyTorch")),
            lambda question: slicer.util.confirmYesNoDisplay(question, windowTitle=_("Install PyTorch")),
            lambda: slicer.util.restart())
        self._updatingGui, self._followedInput = False, None

    @property
    def _job(self):
        """The Segment run's background job while it runs, else None (scene/segment_run.py)."""
        return self._run.job if self._run is not None else None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(os.path.join(resourcesDirectory(), "UI", "AttentionUNetSegment.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = AttentionUNetSegmentLogic()
        self._populateModelComboBox()
        self._populateDeviceComboBox(None)
        self.ui.progressBar.hide()
        from AttentionUNetSegmentLib.scene import interactive_mode, segment_run

        self._run = segment_run.SegmentRun(self.logic)
        self._clickMode = interactive_mode.ClickMode(self.logic, slicer.app.applicationLogic(),
                                                     work_root=slicer.app.temporaryPath)
        timers = [qt.QTimer() for i in range(4)]
        self._jobTimer, self._probeTimer, self._clickTimer, self._installTimer = timers
        for timer, milliseconds, slot in zip(timers, (100, 300, 100, 200), (self.onJobTimer, self.onProbeTimer,
                                                                           self.onClickTimer, self.onInstallTimer)):
            timer.setInterval(milliseconds)
            timer.connect("timeout()", slot)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        # Overlays are recognised by their attribute whenever the scene's volumes change (IDs
        # restart after Close Scene, and scripts or loaded scenes add overlays too).
        for event in (slicer.mrmlScene.NodeAddedEvent, slicer.mrmlScene.NodeRemovedEvent,
                      slicer.mrmlScene.EndImportEvent, slicer.mrmlScene.EndBatchProcessEvent):
            self.addObserver(slicer.mrmlScene, event, self.onSceneNodesChanged)
        for widget, signal, slot in [
                (self.ui.segmentButton, "clicked(bool)", self.onSegmentButton),
                (self.ui.clickToSegmentButton, "toggled(bool)", self.onClickToSegmentToggled),
                (self.ui.excludeButton, "toggled(bool)", lambda checked: self._clickMode.set_exclude(checked)),
                (self.ui.undoButton, "clicked(bool)", lambda *args: self._clickMode.undo()),
                (self.ui.resetButton, "clicked(bool)", lambda *args: self._clickMode.reset()),
                (self.ui.doneButton, "clicked(bool)", self.onDoneButton),
                (self.ui.modelComboBox, "currentIndexChanged(int)", self.onModelChanged),
                (self.ui.modelPathLineEdit, "currentPathChanged(QString)", self.onModelChanged),
                (self.ui.modelFolderButton, "clicked(bool)", self.onModelFolderButton),
                (self.ui.deviceComboBox, "currentIndexChanged(int)", self.onDeviceChanged),
                (self.ui.gateComboBox, "currentIndexChanged(int)", self.onGateChanged),
                (self.ui.opacitySliderWidget, "valueChanged(double)", self.onOpacityChanged),
                (self.ui.outputSegmentationSelector, "currentNodeChanged(vtkMRMLNode*)",
                 self.ui.show3DButton.setSegmentationNode)]:
            widget.connect(signal, slot)
        interactionNode = slicer.app.applicationLogic().GetInteractionNode()
        if interactionNode:
            self.addObserver(interactionNode, interactionNode.InteractionModeChangedEvent,
                             self.onInteractionModeChanged)
        self.initializeParameterNode()
        self._hideOverlaysFromInputSelector()
        self._startDeviceProbe()

    def cleanup(self) -> None:
        """The module is closing (or reloading): stop timers, processes and observers."""
        for timer in (self._probeTimer, self._jobTimer, self._clickTimer):
            timer.stop()
        if self._deviceProbe is not None:
            self._deviceProbe.stop()
        self._cancelJob()
        self._clickMode.cancel()
        self._cancelInstall()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()
        self._hideOverlaysFromInputSelector()

    def exit(self) -> None:
        """Leaving the module: the GUI lets go of the parameter node (a running job still finishes);
        the click mode ends as with Done (its observers and place mode would clash with other modules)."""
        self.onDoneButton()
        if self._parameterNode and self._parameterNodeGuiTag is not None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None

    def onSceneStartClose(self, caller, event) -> None:
        self._cancelJob()
        self._clickMode.cancel()
        self._setClickButton(False)
        self._installFlow.then = None  # an install goes on, but the run it was for belonged to that scene
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        self._hideOverlaysFromInputSelector()
        if self.parent.isEntered:
            self.initializeParameterNode()

    def onSceneNodesChanged(self, caller, event) -> None:
        if not slicer.mrmlScene.IsBatchProcessing():  # EndBatchProcess/EndImport follow: once then
            self._hideOverlaysFromInputSelector()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            self._parameterNode.inputVolume = self.logic.volume_shown_in_slice_views()

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            if self._parameterNodeGuiTag is not None:
                self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
                self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGuiFromParameterNode)
        self._parameterNode = inputParameterNode
        # The output follows the input from the next change on; a restored scene keeps its choice.
        self._followedInput = inputParameterNode.inputVolume if inputParameterNode else None
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGuiFromParameterNode)
            self._updateGuiFromParameterNode()

    def _updateGuiFromParameterNode(self, caller=None, event=None) -> None:
        """Widgets the wrapper does not bind (model, device, gate) and button states."""
        if self._parameterNode is None or self._updatingGui:
            return
        self._updatingGui = True
        try:
            p = self._parameterNode
            if p.inputVolume is not self._followedInput:  # one result per CT: show this CT's own
                self._followedInput = p.inputVolume
                p.outputSegmentation = self.logic.segmentation_node_for(p.inputVolume)
            combo = self.ui.modelComboBox
            index = combo.findData(p.model) if p.model else 0  # "" = the default, listed first
            combo.setCurrentIndex(index if index >= 0 else combo.findData(self.CUSTOM_MODEL))
            if self.ui.modelPathLineEdit.currentPath != p.modelPath:
                self.ui.modelPathLineEdit.currentPath = p.modelPath
            custom = combo.currentData == self.CUSTOM_MODEL
            for widget in (self.ui.modelPathLineEdit, self.ui.modelPathLabel, self.ui.modelFolderButton):
                widget.setVisible(custom)
            self.ui.deviceComboBox.setCurrentIndex(max(self.ui.deviceComboBox.findData(p.device), 0))
            self._populateGateComboBox()
            self._updateButtons()
        finally:
            self._updatingGui = False

    def _updateButtons(self) -> None:
        running = self._job is not None or self._installFlow.running or self._clickMode.busy
        clicking = self._clickMode.active
        haveInput = self._parameterNode is not None and self._parameterNode.inputVolume is not None
        button = self.ui.segmentButton
        button.text, button.enabled, button.toolTip = self._run.segment_button(running, clicking, haveInput)
        self.ui.clickToSegmentButton.enabled = haveInput and self._job is None
        for widget in (self.ui.excludeButton, self.ui.undoButton, self.ui.resetButton, self.ui.doneButton):
            widget.enabled = clicking
        for widget in (self.ui.inputVolumeSelector, self.ui.modelComboBox, self.ui.modelPathLineEdit,
                       self.ui.modelFolderButton, self.ui.deviceComboBox, self.ui.overlapSliderWidget,
                       self.ui.outputSegmentationSelector):
            widget.enabled = not running and not clicking

    def _hideOverlaysFromInputSelector(self) -> None:
        """Attention overlays are scalar volumes too, but not CTs: keep them out of the input list."""
        self.ui.inputVolumeSelector.sortFilterProxyModel().hiddenNodeIDs = self.logic.overlay_node_ids()

    def _populateModelComboBox(self) -> None:
        self.ui.modelComboBox.clear()
        for label, choice in models.model_choices():
            self.ui.modelComboBox.addItem(_(label), choice)

    def onModelChanged(self, *args) -> None:
        if self._parameterNode is not None and not self._updatingGui:
            model, path = self.ui.modelComboBox.currentData or "", self.ui.modelPathLineEdit.currentPath  # both first
            self._parameterNode.model, self._parameterNode.modelPath = model, path

    def onModelFolderButton(self, *args) -> None:
        """ctkPathLineEdit browses files; a model can also be a folder (with model.pt)."""
        start = self.ui.modelPathLineEdit.currentPath or os.path.expanduser("~")
        folder = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), _("Choose a model folder"), start)
        if folder:
            self.ui.modelPathLineEdit.currentPath = folder

    def _startDeviceProbe(self) -> None:
        """Ask Slicer's Python (a hidden background process) for PyTorch and GPUs, to label the devices."""
        try:
            self._deviceProbe = device_probe.DeviceProbe().start()
            self._probeTimer.start()
        except (OSError, processes.PythonSlicerNotFound) as error:
            logging.warning(f"AttentionUNetSegment: device probe failed: {error}")

    def onProbeTimer(self) -> None:
        info = self._deviceProbe.poll() if self._deviceProbe else {}
        if info is None:
            return
        self._probeTimer.stop()
        self._populateDeviceComboBox(info)
        if not info.get("torch"):
            self._showStatus(_("PyTorch is not installed yet: it will be offered when you press Segment."))

    def _populateDeviceComboBox(self, info) -> None:
        combo = self.ui.deviceComboBox
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        for label, device in device_probe.device_choices(info):
            combo.addItem(_(label), device)
        combo.blockSignals(wasBlocked)
        if self._parameterNode:
            combo.setCurrentIndex(max(combo.findData(self._parameterNode.device), 0))

    def onDeviceChanged(self, index) -> None:
        if self._parameterNode is not None and not self._updatingGui:
            self._parameterNode.device = self.ui.deviceComboBox.currentData or "auto"

    def onSegmentButton(self) -> None:
        if self._installFlow.running:
            self._cancelInstall()
            self._showStatus(_("PyTorch installation cancelled."))
        elif self._job is not None or self._clickMode.busy:
            self._cancelJob()
            self._clickMode.cancel()
            self._setClickButton(False)
            self._showStatus(_("Cancelled; the scene is unchanged."))
            self._updateButtons()
        else:
            self.startSegmentation()

    def _readyToRun(self, image, volume, then) -> bool:
        """The user's go-ahead for a CT that does not look like one, and PyTorch present (else its
        install in the background, `then()` once it has finished)."""
        question = self.logic.ct_question(image, volume.GetName())
        if question and not slicer.util.confirmOkCancelDisplay(question, windowTitle=_("Attention U-Net Segment")):
            return False
        return self._pyTorchReady(then)

    def startSegmentation(self) -> None:
        """Start a background job on the whole input CT (scene/segment_run.py)."""
        p = self._parameterNode
        try:
            job, volume = self._run.prepare(p, work_root=slicer.app.temporaryPath)
        except (InputError, processes.PythonSlicerNotFound) as error:
            self._showError(str(error))
            return
        if not self._readyToRun(job.image, volume, self.startSegmentation):
            return
        if p.model == self.CUSTOM_MODEL:
            self.ui.modelPathLineEdit.addCurrentPathToHistory()
        status, error = self._run.start(job, volume)
        if error:
            self._showError(error)
            return
        self._showRunning(status, self._jobTimer)

    def _showRunning(self, text, timer) -> None:
        self.ui.progressBar.value = 0
        self.ui.progressBar.show()
        self._showStatus(text)
        self._updateButtons()
        timer.start()

    def onJobTimer(self) -> None:
        """The job's progress; once it has ended, its result (applied by scene/segment_run.py) or its error."""
        update = self._run.poll(self._parameterNode, busy=slicer.util.WaitCursor)
        if self._progressGoesOn(update, self._jobTimer):
            return
        try:
            if update.error:
                self._showError(update.error, details=update.details)
            elif update.applied is not None:
                self._showApplied(update.applied, update.seconds, update.volume_node)
        finally:
            update.job.cleanup()
            self._progressEnded(self._jobTimer)

    def _progressGoesOn(self, update, timer) -> bool:
        """A job's or an install's poll: its percent and, while it runs (True), its status line. Else
        its timer stops: True when nothing ran, False when it has just ended (the caller shows how)."""
        if update is not None:
            self.ui.progressBar.value = update.percent
        if update is not None and update.running:
            self._showStatus(update.status)
            return True
        timer.stop()
        return update is None

    def _progressEnded(self, timer) -> None:
        """A job or an install is over: its timer stopped, the bar gone, the buttons as they are now."""
        timer.stop()
        self.ui.progressBar.hide()
        self._updateButtons()

    def _showApplied(self, applied, seconds, volume, resultLine=lambda text: text) -> None:
        """A result in the scene (a Segment run's, or the click mode's): the Result line and the gates."""
        self.logic.update_parameters_after(self._parameterNode, volume, applied)
        self._hideOverlaysFromInputSelector()
        self.ui.resultLabel.text = resultLine(self.logic.result_text(volume, applied, seconds))
        self._showStatus(_("Done in {seconds:.1f} s.").format(seconds=seconds))
        self._populateGateComboBox()

    def _cancelJob(self) -> None:
        if self._run.cancel():
            self._progressEnded(self._jobTimer)

    def _pyTorchReady(self, then) -> bool:
        """PyTorch usable (checked without importing it); else, if the user agrees, its install
        (or upgrade) runs in the background and `then()` follows once it has finished."""
        offer = self._installFlow.offer(then, slicer.app.temporaryPath)
        if offer.error:
            self._showError(offer.error)
        if offer.task is not None:
            self._showRunning(_("Installing PyTorch..."), self._installTimer)
        return offer.ready

    def onInstallTimer(self) -> None:
        """The install's progress; once it has ended, the run it was for (pytorch_install.InstallFlow)."""
        update = self._installFlow.poll()
        if self._progressGoesOn(update, self._installTimer):
            return
        self._progressEnded(self._installTimer)
        update = self._installFlow.finish(update)  # the restart is offered once the progress has gone
        if update.error:
            self._showError(update.error, details=update.details)
        elif update.go_on:
            self._startDeviceProbe()
            if update.then is not None:
                update.then()
            else:
                self._showStatus(update.status)

    def _cancelInstall(self) -> None:
        if self._installFlow.cancel():
            self._progressEnded(self._installTimer)

    def onClickToSegmentToggled(self, checked) -> None:
        """On: the click mode (scene/interactive_mode.py) on the input CT; off: as Done."""
        if checked:
            self._enterClickMode()
        else:
            self.onDoneButton()

    def _enterClickMode(self) -> None:
        try:  # the CT and its click model checked, then the go-ahead (again after an install), then the mode
            ready = self._clickMode.enter_for(self._parameterNode, self.ui.excludeButton.checked,
                                              lambda image, ct: self._readyToRun(image, ct, self._enterClickMode))
        except (InputError, processes.PythonSlicerNotFound, OSError, RuntimeError) as error:
            self._showError(str(error))
            ready = False
        self._setClickButton(ready)
        if ready:
            self._clickTimer.start()
            self._showStatus(_("Click on the pancreas in a slice view (Exclude: click beside it). "
                               "Points can be moved; each change updates the segment."))
        self._updateButtons()

    def onDoneButton(self, *args) -> None:
        """Leave the click mode keeping the segment (the last clicks are still answered)."""
        if self._clickMode is not None and self._clickMode.active:
            self._clickMode.done()
            self._setClickButton(False)
            self._showStatus(_("Click mode ended; the segment is kept."))
            self._updateButtons()

    def onClickTimer(self) -> None:
        p = self._parameterNode
        update = self._clickMode.poll(p.gate, p.opacity) if p else self._clickMode.poll()
        if update is not None and update.error:
            self._showError(update.error, details=update.details)
        elif update is not None and update.applied is not None:   # its Result line: interactive_mode.ClickUpdate
            self._showApplied(update.applied, update.seconds, update.volume_node, update.result_line)
        elif update is not None and update.note:
            self._showStatus(update.note)
        if not self._clickMode.running:
            self._clickTimer.stop()
        if not self._clickMode.active:
            self._setClickButton(False)
        self._updateButtons()

    def _setClickButton(self, checked: bool) -> None:
        """The button shows the mode; set without its signal when the mode began or ended by itself."""
        wasBlocked = self.ui.clickToSegmentButton.blockSignals(True)
        self.ui.clickToSegmentButton.checked = checked
        self.ui.clickToSegmentButton.blockSignals(wasBlocked)

    def onInteractionModeChanged(self, caller, event) -> None:
        """Place mode left another way (Esc, toolbar) during the click mode: say how to go on."""
        if self._clickMode is not None and self._clickMode.placing_stopped():
            self._showStatus(_("Placing stopped: points can still be moved, Undo and Done still work; the "
                               "Markups toolbar's place button (or toggling Exclude) places points again."))

    def _populateGateComboBox(self) -> None:
        combo = self.ui.gateComboBox
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        items = self.logic.gate_items(self._parameterNode.inputVolume if self._parameterNode else None)
        for label, choice in items:
            combo.addItem(label, choice)
        combo.setCurrentIndex(max(combo.findData(self._parameterNode.gate if self._parameterNode else MAX_GATE), 0))
        combo.blockSignals(wasBlocked)
        combo.enabled = self.ui.opacitySliderWidget.enabled = len(items) > 1  # (the last: none)

    def onGateChanged(self, index) -> None:
        if self._parameterNode is None or self._updatingGui:
            return
        gate = self.ui.gateComboBox.currentData or NO_OVERLAY
        self._parameterNode.gate = gate
        if self._parameterNode.inputVolume is not None:
            self.logic.show_gate_if_made(self._parameterNode.inputVolume, gate, self._parameterNode.opacity)

    def onOpacityChanged(self, value) -> None:
        volume = self._parameterNode.inputVolume if self._parameterNode else None
        if volume is not None:
            self.logic.set_overlay_opacity(volume, value)

    def _showStatus(self, text) -> None:
        self.ui.statusLabel.setStyleSheet("")
        self.ui.statusLabel.text = text

    def _showError(self, message, details="") -> None:
        """One clear line in the module (and a dialog); the details go to the log, never only a traceback."""
        self.ui.statusLabel.setStyleSheet("color: #d03030;")
        self.ui.statusLabel.text = message
        logging.error(f"AttentionUNetSegment: {message}" + (f"\n{details}" if details else ""))
        slicer.util.errorDisplay(message, windowTitle=_("Attention U-Net Segment"),
                                 **({"detailedText": details} if details else {}))


class AttentionUNetSegmentLogic(ScriptedLoadableModuleLogic, AttentionUNetSegmentSceneLogic):
    """The scene logic (AttentionUNetSegmentLib.scene.logic) on slicer.mrmlScene, usable without the GUI:
    job = logic.create_job(volumeNode).start(); poll until done; logic.apply_result(volumeNode, job.result())."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        AttentionUNetSegmentSceneLogic.__init__(self)

    def getParameterNode(self):
        return AttentionUNetSegmentParameterNode(super().getParameterNode())


class AttentionUNetSegmentTest(ScriptedLoadableModuleTest):
    """End to end inside Slicer (AttentionUNetSegmentLib.scene.selftest): synthetic CT -> background
    job with a tiny model -> scene nodes; cancel; a broken model. Torch is never imported here: the
    job's Python is asked for it (skipped with a clear message on a stock Slicer) and writes the model."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        from AttentionUNetSegmentLib.scene import selftest

        selftest.run_self_test(self, AttentionUNetSegmentLogic(), self.setUp, self.moduleWidget)

    def moduleWidget(self):
        """The module's own widget, entered (so it holds the scene's parameter node)."""
        slicer.util.selectModule("AttentionUNetSegment")
        return slicer.util.getModuleWidget("AttentionUNetSegment")
