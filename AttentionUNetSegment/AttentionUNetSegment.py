"""AttentionUNetSegment: one-click pancreas segmentation on CT with a 3D Attention U-Net, with
each attention gate's coefficients shown as colour overlays on the CT slices.

Thin Slicer wiring only. The scene-side logic (volume node to image, background job, result
nodes, overlay display) is `AttentionUNetSegmentLib.slicer.scene`, tested headless with pytest;
the computation is the `segment` command of `AttentionUNetSegmentLib`, run in a background
process so Slicer stays usable. PyTorch is never imported by this file.
"""

import importlib.util
import logging
import os
import tempfile
import time
from typing import Annotated

import qt
import slicer
import vtk
from AttentionUNetSegmentLib.slicer import scene as slicer_scene
from AttentionUNetSegmentLib.core.errors import InputError
from AttentionUNetSegmentLib.slicer.scene import (
    MAX_GATE,
    NO_OVERLAY,
    AttentionUNetSegmentSceneLogic,
)
from slicer import (
    vtkMRMLMarkupsFiducialNode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLSegmentationNode,
)
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

DEFAULT_MODEL_FILE = "pancreas_phantom_attention_unet.pt"


def resourcesDirectory() -> str:
    """Resources/ beside the module when installed, ../Resources in the source tree."""
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [os.path.join(here, "Resources"), os.path.normpath(os.path.join(here, "..", "Resources"))]
    for candidate in candidates:
        if os.path.isfile(os.path.join(candidate, "UI", "AttentionUNetSegment.ui")):
            return candidate
    return candidates[0]


def bundledModelPaths() -> list:
    folder = os.path.join(resourcesDirectory(), "Models")
    if not os.path.isdir(folder):
        return []
    names = sorted(n for n in os.listdir(folder) if n.endswith(".pt"))
    if DEFAULT_MODEL_FILE in names:  # the default first
        names.remove(DEFAULT_MODEL_FILE)
        names.insert(0, DEFAULT_MODEL_FILE)
    return [os.path.join(folder, n) for n in names]


#
# AttentionUNetSegment
#


class AttentionUNetSegment(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Attention U-Net Segment")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["AttentionUNetSegment contributors"]
        self.parent.helpText = _("""
Pancreas segmentation on CT with a 3D Attention U-Net. Choose the CT and press <b>Segment</b>,
or press <b>Click on pancreas</b> and click on the pancreas in a slice view to segment the region
around the click. The result is a "Pancreas" segment (SNOMED CT 15776009) with its volume; the
coefficients of every attention gate are shown as a colour overlay on the CT slices.
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


#
# Parameter node
#


@parameterNodeWrapper
class AttentionUNetSegmentParameterNode:
    """Module state, saved with the scene.

    inputVolume: the CT. model: the file name of a bundled model ("" = the default) or "custom",
    then modelPath is the user's model file or folder.
    device: auto | cpu | cuda | mps. overlap: sliding-window overlap (quality).
    gate: overlay shown (a gate name, "max" or "none"). opacity: overlay opacity.
    outputSegmentation: the result segmentation (re-used on re-runs).
    pointNode: the click-to-segment point.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    model: str = ""
    modelPath: str = ""
    device: str = "auto"
    overlap: Annotated[float, WithinRange(0.0, 0.75)] = 0.5
    gate: str = MAX_GATE
    opacity: Annotated[float, WithinRange(0.0, 1.0)] = slicer_scene.DEFAULT_OPACITY
    outputSegmentation: vtkMRMLSegmentationNode
    pointNode: vtkMRMLMarkupsFiducialNode


#
# AttentionUNetSegmentWidget
#


class AttentionUNetSegmentWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    CUSTOM_MODEL = "custom"

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._updatingGui = False
        self._job = None
        self._jobVolume = None
        self._jobStartTime = 0.0
        self._deviceProbe = None
        self._observedPointNode = None

    def resourcePath(self, filename):
        return os.path.join(resourcesDirectory(), filename)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/AttentionUNetSegment.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = AttentionUNetSegmentLogic()

        self._populateModelComboBox()
        self._populateDeviceComboBox(None)
        self.ui.progressBar.hide()
        self._jobTimer = qt.QTimer()
        self._jobTimer.setInterval(100)
        self._jobTimer.connect("timeout()", self.onJobTimer)
        self._probeTimer = qt.QTimer()
        self._probeTimer.setInterval(300)
        self._probeTimer.connect("timeout()", self.onProbeTimer)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.segmentButton.connect("clicked(bool)", self.onSegmentButton)
        self.ui.clickToSegmentButton.connect("toggled(bool)", self.onClickToSegmentToggled)
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self.onModelChanged)
        self.ui.modelPathLineEdit.connect("currentPathChanged(QString)", self.onModelChanged)
        self.ui.deviceComboBox.connect("currentIndexChanged(int)", self.onDeviceChanged)
        self.ui.gateComboBox.connect("currentIndexChanged(int)", self.onGateChanged)
        self.ui.opacitySliderWidget.connect("valueChanged(double)", self.onOpacityChanged)
        self.ui.outputSegmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)",
                                                   self.ui.show3DButton.setSegmentationNode)

        interactionNode = slicer.app.applicationLogic().GetInteractionNode()
        if interactionNode:
            self.addObserver(interactionNode, interactionNode.InteractionModeChangedEvent,
                             self.onInteractionModeChanged)

        self.initializeParameterNode()
        self._startDeviceProbe()

    def cleanup(self) -> None:
        self._cancelJob()
        self._setPlaceMode(False)
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        self._setPlaceMode(False)
        if self._parameterNode:
            if self._parameterNodeGuiTag is not None:
                self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
                self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGuiFromParameterNode)

    def onSceneStartClose(self, caller, event) -> None:
        self._cancelJob()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    # -- parameter node ---------------------------------------------------------------------------
    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            self._parameterNode.inputVolume = self._volumeShownInSliceViews()

    @staticmethod
    def _volumeShownInSliceViews():
        """The background volume of the slice views (what the user is looking at), else the first CT."""
        layoutManager = slicer.app.layoutManager()
        if layoutManager:
            for name in layoutManager.sliceViewNames():
                compositeNode = layoutManager.sliceWidget(name).mrmlSliceCompositeNode()
                node = slicer.mrmlScene.GetNodeByID(compositeNode.GetBackgroundVolumeID() or "")
                if node and node.IsA("vtkMRMLScalarVolumeNode") and not node.IsA("vtkMRMLLabelMapVolumeNode") \
                        and not node.GetAttribute(slicer_scene.GATE_ATTRIBUTE):
                    return node
        for node in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode"):
            if not node.IsA("vtkMRMLLabelMapVolumeNode") and not node.GetAttribute(slicer_scene.GATE_ATTRIBUTE):
                return node
        return None

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            if self._parameterNodeGuiTag is not None:
                self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
                self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGuiFromParameterNode)
        self._parameterNode = inputParameterNode
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
            combo = self.ui.modelComboBox
            index = combo.findData(p.model) if p.model else 0  # "" = the default, listed first
            combo.setCurrentIndex(index if index >= 0 else combo.findData(self.CUSTOM_MODEL))
            if self.ui.modelPathLineEdit.currentPath != p.modelPath:
                self.ui.modelPathLineEdit.currentPath = p.modelPath
            custom = combo.currentData == self.CUSTOM_MODEL
            self.ui.modelPathLineEdit.setVisible(custom)
            self.ui.modelPathLabel.setVisible(custom)
            deviceIndex = self.ui.deviceComboBox.findData(p.device)
            self.ui.deviceComboBox.setCurrentIndex(max(deviceIndex, 0))
            self._populateGateComboBox()
            self._updateButtons()
        finally:
            self._updatingGui = False

    def _updateButtons(self) -> None:
        running = self._job is not None
        haveInput = self._parameterNode is not None and self._parameterNode.inputVolume is not None
        self.ui.segmentButton.text = _("Cancel") if running else _("Segment")
        self.ui.segmentButton.enabled = running or haveInput
        self.ui.segmentButton.toolTip = (
            _("Stop the segmentation; the scene is left as it was.") if running else
            _("Segment the pancreas on the whole CT.") if haveInput else _("Select an input CT first."))
        self.ui.clickToSegmentButton.enabled = haveInput
        for widget in (self.ui.inputVolumeSelector, self.ui.modelComboBox, self.ui.modelPathLineEdit,
                       self.ui.deviceComboBox, self.ui.overlapSliderWidget, self.ui.outputSegmentationSelector):
            widget.enabled = not running

    # -- model and device ------------------------------------------------------------------------------
    def _populateModelComboBox(self) -> None:
        combo = self.ui.modelComboBox
        combo.clear()
        for path in bundledModelPaths():
            fileName = os.path.basename(path)
            label = (_("Bundled: pancreas (synthetic phantoms, not for clinical use)")
                     if fileName == DEFAULT_MODEL_FILE else _("Bundled: {name}").format(name=os.path.splitext(fileName)[0]))
            combo.addItem(label, fileName)
        combo.addItem(_("Model file or folder..."), self.CUSTOM_MODEL)

    def _selectedModelPath(self) -> str:
        """The model file/folder to run; InputError with a clear message when there is none."""
        p = self._parameterNode
        if p.model == self.CUSTOM_MODEL:
            if not p.modelPath:
                raise InputError(None, _("choose your model file (.pt) or model folder"))
            if not os.path.exists(p.modelPath):
                raise InputError(p.modelPath, _("does not exist; choose a model file (.pt) or folder"))
            return p.modelPath
        bundled = bundledModelPaths()
        for path in bundled:
            if os.path.basename(path) == (p.model or DEFAULT_MODEL_FILE):
                return path
        if not p.model and bundled:
            return bundled[0]
        raise InputError(os.path.join(resourcesDirectory(), "Models", p.model or DEFAULT_MODEL_FILE),
                         _("bundled model is missing; reinstall the extension or choose a model file"))

    def onModelChanged(self, *args) -> None:
        if self._parameterNode is None or self._updatingGui:
            return
        model, path = self.ui.modelComboBox.currentData or "", self.ui.modelPathLineEdit.currentPath  # read both first
        self._parameterNode.model = model
        self._parameterNode.modelPath = path

    def _startDeviceProbe(self) -> None:
        """Ask Slicer's Python (in a background process) for PyTorch and GPUs, to label the devices."""
        try:
            self._deviceProbe = slicer_scene.DeviceProbe().start()
            self._probeTimer.start()
        except OSError as error:
            logging.warning(f"AttentionUNetSegment: device probe failed: {error}")

    def onProbeTimer(self) -> None:
        info = self._deviceProbe.poll() if self._deviceProbe else {}
        if info is None:
            return
        self._probeTimer.stop()
        self._populateDeviceComboBox(info)
        if not info.get("torch"):
            self.ui.statusLabel.text = _("PyTorch is not installed yet: it will be offered when you press Segment.")

    def _populateDeviceComboBox(self, info) -> None:
        combo = self.ui.deviceComboBox
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        gpus = (info or {}).get("cuda") or []
        if info is None:
            combo.addItem(_("Auto (checking for a GPU...)"), "auto")
        elif gpus:
            combo.addItem(_("Auto: GPU ({name})").format(name=gpus[0]), "auto")
        elif (info or {}).get("mps"):
            combo.addItem(_("Auto: Apple GPU (MPS)"), "auto")
        else:
            combo.addItem(_("Auto: CPU (no GPU found)"), "auto")
        combo.addItem(_("CPU"), "cpu")
        if gpus:
            combo.addItem(_("GPU: {name}").format(name=gpus[0]), "cuda")
        elif (info or {}).get("mps"):
            combo.addItem(_("Apple GPU (MPS)"), "mps")
        else:
            combo.addItem(_("GPU (CUDA; none found)") if info is not None else _("GPU (CUDA)"), "cuda")
        combo.blockSignals(wasBlocked)
        if self._parameterNode:
            combo.setCurrentIndex(max(combo.findData(self._parameterNode.device), 0))

    def onDeviceChanged(self, index) -> None:
        if self._parameterNode is not None and not self._updatingGui:
            self._parameterNode.device = self.ui.deviceComboBox.currentData or "auto"

    # -- running --------------------------------------------------------------------------------------
    def onSegmentButton(self) -> None:
        if self._job is not None:
            self._cancelJob()
            self._showStatus(_("Cancelled; the scene is unchanged."))
            return
        self.startSegmentation()

    def startSegmentation(self, pointWorldRas=None) -> None:
        """Start a background job on the input CT (optionally around a clicked point)."""
        p = self._parameterNode
        try:
            volume = p.inputVolume if p else None
            slicer_scene.check_input_volume(volume)
            modelPath = self._selectedModelPath()
            job = self.logic.create_job(volume, model_path=modelPath, device=p.device, overlap=p.overlap,
                                        point_world_ras=pointWorldRas, work_root=slicer.app.temporaryPath)
        except InputError as error:
            self._showError(str(error))
            return
        warnings = slicer_scene.ct_warnings(job.image, volume.GetName())
        if warnings and not slicer.util.confirmOkCancelDisplay(
                _("This does not look like a CT in Hounsfield units:") + "\n\n" + "\n".join(warnings)
                + "\n\n" + _("Segment anyway?"), windowTitle=_("Attention U-Net Segment")):
            return
        if not self.ensurePyTorch():
            return
        try:
            job.start()
        except OSError as error:
            self._showError(_("Could not start the segmentation process: {error}").format(error=error))
            return
        self._job = job
        self._jobVolume = volume
        self._jobStartTime = time.perf_counter()
        self.ui.progressBar.value = 0
        self.ui.progressBar.show()
        self._showStatus(_("Starting..."))
        self._updateButtons()
        self._jobTimer.start()

    def onJobTimer(self) -> None:
        job = self._job
        if job is None:
            self._jobTimer.stop()
            return
        status = job.poll()
        self.ui.progressBar.value = int(round(100 * status.fraction))
        if status.state == slicer_scene.RUNNING:
            self._showStatus(_("{message} ({seconds:.0f} s)").format(message=status.message, seconds=status.elapsed_s))
            return
        self._jobTimer.stop()
        self._job = None
        try:
            if status.state == slicer_scene.SUCCEEDED:
                self._applyResult(job)
            elif status.state == slicer_scene.FAILED:
                self._showError(status.error, details="\n".join(job.log_lines))
        finally:
            job.cleanup()
            self.ui.progressBar.hide()
            self._updateButtons()

    def _applyResult(self, job) -> None:
        p = self._parameterNode
        volume = self._jobVolume
        try:
            with slicer.util.WaitCursor():
                applied = self.logic.apply_result(volume, job.result(), segmentation_node=p.outputSegmentation,
                                                  gate=p.gate, opacity=p.opacity)
        except Exception as error:  # noqa: BLE001 - shown in the module, details in the log
            logging.exception("AttentionUNetSegment: applying the result failed")
            self._showError(_("Could not show the result: {error}").format(error=error))
            return
        seconds = time.perf_counter() - self._jobStartTime
        p.outputSegmentation = applied.segmentation_node
        if p.gate not in applied.overlay_nodes and p.gate != NO_OVERLAY:
            p.gate = MAX_GATE
        summary = applied.summary
        volumes = ", ".join(_("{name}: {ml:.1f} mL").format(name=name, ml=ml) for name, ml in applied.volume_ml.items())
        resultText = _("{volumes}. Shown after {seconds:.1f} s on {device} ({precision}).").format(
            volumes=volumes, seconds=seconds, device=summary.get("device", "?"), precision=summary.get("precision", "?"))
        # An empty segment is easy to miss in the views: say it, so nobody reads it as "no pancreas".
        emptyNames = [name for name, ml in applied.volume_ml.items() if ml <= 0.0]
        if emptyNames:
            resultText += " " + _("Nothing was found for {names}: the segment is empty (the model may not suit "
                                  "this scan). The attention maps still show where the network looked.").format(
                names=", ".join(emptyNames))
        self.ui.resultLabel.text = resultText
        self._showStatus(_("Done in {seconds:.1f} s.").format(seconds=seconds))
        self._populateGateComboBox()

    def _cancelJob(self) -> None:
        if self._job is not None:
            job, self._job = self._job, None
            self._jobTimer.stop()
            job.cancel()
            self.ui.progressBar.hide()
            self._updateButtons()

    def ensurePyTorch(self) -> bool:
        """PyTorch present, or installed after the user agreed (SlicerPyTorch when available, else pip)."""
        if importlib.util.find_spec("torch") is not None:
            return True
        if not slicer.util.confirmOkCancelDisplay(
                _("This module needs PyTorch, which is not installed in Slicer yet.\n\n"
                  "Install it now? This downloads about 200 MB (CPU) to several GB (GPU) and may take "
                  "several minutes. SimpleITK and numpy, which Slicer ships, are not changed."),
                windowTitle=_("Install PyTorch")):
            self._showError(_("PyTorch is required: install it (or the PyTorch extension) and press Segment again."))
            return False
        self._showStatus(_("Installing PyTorch..."))
        slicer.app.processEvents()
        try:
            with slicer.util.WaitCursor():
                try:
                    import PyTorchUtils  # the SlicerPyTorch extension: picks the CUDA build matching the GPU
                except ImportError:
                    PyTorchUtils = None
                if PyTorchUtils is not None:
                    torchLogic = PyTorchUtils.PyTorchUtilsLogic()
                    if not torchLogic.torchInstalled() and torchLogic.installTorch(askConfirmation=False) is None:
                        raise RuntimeError(_("the PyTorch extension could not install PyTorch"))
                else:
                    constraints = os.path.join(slicer.app.temporaryPath, "AttentionUNetSegment-constraints.txt")
                    with open(constraints, "w") as file:
                        file.write(slicer_scene.pip_constraints_for_shipped_packages())
                    slicer.util.pip_install(["torch", "--constraint", constraints])
        except Exception as error:  # noqa: BLE001
            self._showError(_("Installing PyTorch failed: {error}").format(error=error))
            return False
        importlib.invalidate_caches()
        if importlib.util.find_spec("torch") is None:
            self._showError(_("PyTorch was installed but cannot be found: restart Slicer and press Segment again."))
            return False
        self._startDeviceProbe()
        return True

    # -- click-to-segment ----------------------------------------------------------------------------
    def onClickToSegmentToggled(self, checked) -> None:
        self._setPlaceMode(checked)
        if checked:
            self._showStatus(_("Click on the pancreas in a slice view."))

    def _pointNode(self):
        p = self._parameterNode
        node = p.pointNode
        if node is None:
            node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", _("Pancreas click"))
            node.CreateDefaultDisplayNodes()
            node.GetDisplayNode().SetSelectedColor(0.0, 0.9, 1.0)
            node.GetDisplayNode().SetGlyphScale(2.0)
            p.pointNode = node
        if self._observedPointNode is not node:
            if self._observedPointNode is not None:
                self.removeObserver(self._observedPointNode, slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent,
                                    self.onPointPlaced)
            self.addObserver(node, slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent, self.onPointPlaced)
            self._observedPointNode = node
        return node

    def _setPlaceMode(self, enabled) -> None:
        appLogic = slicer.app.applicationLogic()
        interactionNode = appLogic.GetInteractionNode() if appLogic else None
        if interactionNode is None:
            return
        if enabled:
            node = self._pointNode()
            selectionNode = appLogic.GetSelectionNode()
            selectionNode.SetReferenceActivePlaceNodeClassName("vtkMRMLMarkupsFiducialNode")
            selectionNode.SetActivePlaceNodeID(node.GetID())
            interactionNode.SetPlaceModePersistence(0)
            interactionNode.SetCurrentInteractionMode(interactionNode.Place)
        elif interactionNode.GetCurrentInteractionMode() == interactionNode.Place:
            interactionNode.SetCurrentInteractionMode(interactionNode.ViewTransform)

    def onInteractionModeChanged(self, caller, event) -> None:
        """Un-check the click button when the user leaves place mode another way (Esc, toolbar)."""
        selectionNode = slicer.app.applicationLogic().GetSelectionNode()
        placingOurPoint = (caller.GetCurrentInteractionMode() == caller.Place and self._observedPointNode is not None
                           and selectionNode.GetActivePlaceNodeID() == self._observedPointNode.GetID())
        if self.ui.clickToSegmentButton.checked and not placingOurPoint:
            wasBlocked = self.ui.clickToSegmentButton.blockSignals(True)
            self.ui.clickToSegmentButton.checked = False
            self.ui.clickToSegmentButton.blockSignals(wasBlocked)

    def onPointPlaced(self, caller, event) -> None:
        node = caller
        while node.GetNumberOfControlPoints() > 1:  # one click point: the newest
            node.RemoveNthControlPoint(0)
        self.ui.clickToSegmentButton.checked = False
        point = [0.0, 0.0, 0.0]
        node.GetNthControlPointPositionWorld(0, point)
        if self._job is not None:
            self._cancelJob()
        self.startSegmentation(pointWorldRas=point)

    # -- overlays ---------------------------------------------------------------------------------------
    def _populateGateComboBox(self) -> None:
        combo = self.ui.gateComboBox
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        volume = self._parameterNode.inputVolume if self._parameterNode else None
        choices = self.logic.gate_choices(volume) if volume else []
        for choice in choices:
            combo.addItem(_("Maximum over gates") if choice == MAX_GATE else
                          _("Gate {number}").format(number=choice.replace("gate", "")), choice)
        combo.addItem(_("None (hide overlay)"), NO_OVERLAY)
        gate = self._parameterNode.gate if self._parameterNode else MAX_GATE
        combo.setCurrentIndex(max(combo.findData(gate), 0))
        combo.blockSignals(wasBlocked)
        combo.enabled = bool(choices)
        self.ui.opacitySliderWidget.enabled = bool(choices)

    def onGateChanged(self, index) -> None:
        if self._parameterNode is None or self._updatingGui:
            return
        gate = self.ui.gateComboBox.currentData or NO_OVERLAY
        self._parameterNode.gate = gate
        volume = self._parameterNode.inputVolume
        if volume is not None and (gate == NO_OVERLAY or gate in self.logic.overlay_nodes_for(volume)):
            self.logic.show_overlay(volume, gate, self._parameterNode.opacity)

    def onOpacityChanged(self, value) -> None:
        volume = self._parameterNode.inputVolume if self._parameterNode else None
        if volume is not None:
            self.logic.set_overlay_opacity(volume, value)

    # -- messages -----------------------------------------------------------------------------------------
    def _showStatus(self, text) -> None:
        self.ui.statusLabel.setStyleSheet("")
        self.ui.statusLabel.text = text

    def _showError(self, message, details="") -> None:
        """One clear line in the module (and a dialog); the details go to the log, never only a traceback."""
        self.ui.statusLabel.setStyleSheet("color: #d03030;")
        self.ui.statusLabel.text = message
        logging.error(f"AttentionUNetSegment: {message}" + (f"\n{details}" if details else ""))
        extra = {"detailedText": details} if details else {}
        slicer.util.errorDisplay(message, windowTitle=_("Attention U-Net Segment"), **extra)


#
# AttentionUNetSegmentLogic
#


class AttentionUNetSegmentLogic(ScriptedLoadableModuleLogic, AttentionUNetSegmentSceneLogic):
    """Scene logic (see AttentionUNetSegmentLib.slicer.scene) on slicer.mrmlScene, usable without the GUI:

        logic = AttentionUNetSegmentLogic()
        job = logic.create_job(volumeNode, model_path=path, device="auto").start()
        ... job.poll() until done ...
        applied = logic.apply_result(volumeNode, job.result())
        logic.show_overlay(volumeNode, "gate3", 0.5)
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        AttentionUNetSegmentSceneLogic.__init__(self)

    def getParameterNode(self):
        return AttentionUNetSegmentParameterNode(super().getParameterNode())


#
# AttentionUNetSegmentTest
#


class AttentionUNetSegmentTest(ScriptedLoadableModuleTest):
    """End to end inside Slicer: phantom CT -> background job with a tiny model -> scene nodes."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_SegmentPhantomEndToEnd()
        self.setUp()
        self.test_CancelLeavesSceneUnchanged()
        self.setUp()
        self.test_BrokenModelGivesMessage()

    # -- helpers ---------------------------------------------------------------------------------------------
    def _phantomVolume(self):
        """A small phantom CT (AttentionUNetSegmentLib.phantom.generator), else a synthetic sphere in HU."""
        import numpy as np
        import SimpleITK as sitk

        try:
            from AttentionUNetSegmentLib.phantom.generator import generate_case

            # Small on purpose (44 x 44 x 16 voxels of 4 mm): the self-test stays fast on a CPU.
            image = generate_case(seed=3, spacing_xyz=(4.0, 4.0, 4.0), fov_mm=176.0, z_extent_mm=64.0).ct
        except ImportError:
            z, y, x = np.mgrid[0:16, 0:44, 0:44]
            array = np.where((x - 22) ** 2 + (y - 22) ** 2 + (z - 8) ** 2 < 7 ** 2, 40, -1000).astype(np.int16)
            array[:, :, :2] = 700  # bone, so that the volume looks like a CT in HU
            image = sitk.GetImageFromArray(array)
            image.SetSpacing((4.0, 4.0, 4.0))
        volume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Phantom CT")
        slicer_scene.image_to_volume_node(image, volume)
        volume.CreateDefaultDisplayNodes()
        slicer.util.setSliceViewerLayers(background=volume)
        return volume

    def _tinyModelPath(self):
        from AttentionUNetSegmentLib.files.modelfile import save_model, tiny_test_model

        self._tempDir = tempfile.TemporaryDirectory()
        path = os.path.join(self._tempDir.name, "tiny.pt")
        model, spec = tiny_test_model(seed=0)
        save_model(path, model, spec)
        return path

    def _waitFor(self, job, timeoutSeconds=600):
        start = time.time()
        while job.poll().state == slicer_scene.RUNNING:
            slicer.app.processEvents()  # the GUI stays responsive while the job runs
            time.sleep(0.05)
            self.assertLess(time.time() - start, timeoutSeconds, "segmentation did not finish in time")
        return job.poll()

    # -- tests ----------------------------------------------------------------------------------------------
    def test_SegmentPhantomEndToEnd(self):
        self.delayDisplay("Segmenting a phantom with a tiny model in a background process")
        import numpy as np

        volume = self._phantomVolume()
        modelPath = self._tinyModelPath()
        logic = AttentionUNetSegmentLogic()
        job = logic.create_job(volume, model_path=modelPath, device="cpu", overlap=0.0).start()
        status = self._waitFor(job)
        self.assertEqual(status.state, slicer_scene.SUCCEEDED, status.error)
        applied = logic.apply_result(volume, job.result())
        job.cleanup()
        self.assertFalse(os.path.exists(job.work_dir))

        segmentationNode = applied.segmentation_node
        segment = segmentationNode.GetSegmentation().GetSegment("Pancreas")
        self.assertIsNotNone(segment)
        terminology = vtk.reference("")
        segment.GetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), terminology)
        self.assertIn("15776009", str(terminology))
        np.testing.assert_allclose(segment.GetColor(), (249 / 255, 180 / 255, 111 / 255), atol=1e-6)
        self.assertEqual(sorted(applied.overlay_nodes), sorted(list(job.result().attention) + [MAX_GATE]))
        for gate, node in applied.overlay_nodes.items():
            values = slicer.util.arrayFromVolume(node)
            self.assertEqual(values.shape, slicer.util.arrayFromVolume(volume).shape)
            self.assertGreaterEqual(float(values.min()), 0.0)
            self.assertLessEqual(float(values.max()), 1.0)

        # Gate and opacity switch instantly, without a re-run.
        shown = logic.show_overlay(volume, "gate3", 0.4)
        compositeNode = slicer.app.layoutManager().sliceWidget("Red").mrmlSliceCompositeNode()
        self.assertEqual(compositeNode.GetForegroundVolumeID(), shown.GetID())
        self.assertAlmostEqual(compositeNode.GetForegroundOpacity(), 0.4)

        # A re-run re-uses every node (the same result applied again: nothing is added).
        nodeCount = slicer.mrmlScene.GetNumberOfNodes()
        again = logic.apply_result(volume, job.result())
        self.assertIs(again.segmentation_node, segmentationNode)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodeCount)
        self.delayDisplay("Test passed")

    def test_CancelLeavesSceneUnchanged(self):
        self.delayDisplay("Cancelling a running segmentation")
        volume = self._phantomVolume()
        modelPath = self._tinyModelPath()
        nodeIds = [slicer.mrmlScene.GetNthNode(i).GetID() for i in range(slicer.mrmlScene.GetNumberOfNodes())]
        logic = AttentionUNetSegmentLogic()
        job = logic.create_job(volume, model_path=modelPath, device="cpu", overlap=0.75).start()
        start = time.time()
        while job.poll().state == slicer_scene.RUNNING and job.poll().fraction == 0.0 and time.time() - start < 120:
            slicer.app.processEvents()  # until the network runs (first progress from the process)
            time.sleep(0.05)
        self.assertEqual(job.poll().state, slicer_scene.RUNNING)
        start = time.time()
        job.cancel()
        self.assertLess(time.time() - start, 2.0)
        self.assertEqual(job.poll().state, slicer_scene.CANCELLED)
        self.assertIsNotNone(job.process.poll(), "the segmentation process still runs")
        self.assertFalse(os.path.exists(job.work_dir))
        self.assertRaises(RuntimeError, job.result)
        self.assertEqual([slicer.mrmlScene.GetNthNode(i).GetID() for i in range(slicer.mrmlScene.GetNumberOfNodes())],
                         nodeIds)
        self.delayDisplay("Test passed")

    def test_BrokenModelGivesMessage(self):
        self.delayDisplay("A broken model file gives a one-line message")
        volume = self._phantomVolume()
        self._tempDir = tempfile.TemporaryDirectory()
        brokenPath = os.path.join(self._tempDir.name, "broken.pt")
        with open(brokenPath, "wb") as file:
            file.write(b"not a model" * 100)
        nodeCount = slicer.mrmlScene.GetNumberOfNodes()
        job = AttentionUNetSegmentLogic().create_job(volume, model_path=brokenPath, device="cpu").start()
        status = self._waitFor(job)
        job.cleanup()
        self.assertEqual(status.state, slicer_scene.FAILED)
        self.assertIn("broken.pt", status.error)
        self.assertNotIn("\n", status.error)
        self.assertNotIn("Traceback", status.error)
        self.assertFalse(os.path.exists(job.work_dir))
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodeCount)
        self.delayDisplay("Test passed")
