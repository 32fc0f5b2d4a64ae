"""The module file outside Slicer: Slicer's Qt side replaced by small fakes, the rest real.

Fakes: `qt` (timers that record start/stop, QTimer.singleShot queued until the test runs it, the
folder dialog), slicer.i18n, slicer.ScriptedLoadableModule, a parameter-node wrapper that notifies
observers like the real one, widgets with the few Qt properties the module uses (names from the
.ui file), slicer.app, and the dialogs of slicer.util. Real: the MRML scene, interaction and
selection nodes, markups, VTK observers and their call data, jobs and processes.
No pytest and no torch here: a child process uses it to run the self-test in a Python without torch.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import types
import unittest
import xml.etree.ElementTree as ET
from pathlib import Path
from unittest import mock

import slicer

REPO = Path(__file__).resolve().parents[3]
MODULE_FILE = REPO / "AttentionUNetSegment" / "AttentionUNetSegment.py"
UI_FILE = REPO / "Resources" / "UI" / "AttentionUNetSegment.ui"


class FakeWidget:
    """The Qt properties and signals the module uses, on plain attributes."""

    def __init__(self, name: str):
        self.objectName, self.enabled, self.visible, self.checked = name, True, True, False
        self.text, self.toolTip, self.value, self.currentPath = "", "", 0.0, ""
        self.history: list[str] = []
        self.proxy = types.SimpleNamespace(hiddenNodeIDs=[])
        self._slots: dict[str, list] = {}
        self._blocked = False

    def connect(self, signal, slot):
        self._slots.setdefault(signal, []).append(slot)

    def emit(self, signal, *args):
        if not self._blocked:
            for slot in self._slots.get(signal, []):
                slot(*args)

    def blockSignals(self, blocked):
        previous, self._blocked = self._blocked, blocked
        return previous

    def setVisible(self, visible):
        self.visible = visible

    def show(self):
        self.visible = True

    def hide(self):
        self.visible = False

    def setStyleSheet(self, sheet):
        self.styleSheet = sheet

    def setSegmentationNode(self, node):
        self.segmentationNode = node

    def setMRMLScene(self, scene):
        self.scene = scene

    def sortFilterProxyModel(self):          # qMRMLNodeComboBox
        return self.proxy

    def addCurrentPathToHistory(self):        # ctkPathLineEdit
        self.history.append(self.currentPath)


class FakeComboBox(FakeWidget):
    def __init__(self, name: str):
        super().__init__(name)
        self.items: list[tuple[str, object]] = []
        self.currentIndex = -1

    def addItem(self, text, data=None):
        self.items.append((text, data))
        if self.currentIndex < 0:
            self.setCurrentIndex(0)

    def clear(self):
        self.items, self.currentIndex = [], -1

    def findData(self, data):
        return next((i for i, (_, d) in enumerate(self.items) if d == data), -1)

    def setCurrentIndex(self, index):
        if index != self.currentIndex:
            self.currentIndex = index
            self.emit("currentIndexChanged(int)", index)

    @property
    def currentData(self):
        return self.items[self.currentIndex][1] if 0 <= self.currentIndex < len(self.items) else None

    def itemTexts(self):
        return [text for text, _ in self.items]


def fake_parameter_node_wrapper(cls):
    """Like slicer.parameterNodeWrapper: typed attributes with defaults; each change notifies."""
    fields = {name: getattr(cls, name, None) for name in cls.__annotations__}

    class Wrapper:
        def __init__(self, node):
            object.__setattr__(self, "_values", dict(fields))
            object.__setattr__(self, "_observers", {})
            object.__setattr__(self, "parameterNode", node)

        def __getattr__(self, name):
            values = object.__getattribute__(self, "_values")
            if name in values:
                return values[name]
            raise AttributeError(name)

        def __setattr__(self, name, value):
            if name not in self._values:
                raise AttributeError(f"{name} is not a parameter")
            self._values[name] = value
            for callback in list(self._observers.values()):
                callback(self, "ModifiedEvent")

        def AddObserver(self, event, callback, priority=0.0):
            tag = len(self._observers) + 1
            self._observers[tag] = callback
            return tag

        def RemoveObserver(self, tag):
            self._observers.pop(tag, None)

        def connectGui(self, ui):
            return object()

        def disconnectGui(self, tag):
            assert tag is not None

    Wrapper.__name__ = cls.__name__
    return Wrapper


class FakeTimer:
    """qt.QTimer: records start/stop; QTimer.singleShot callbacks wait in `pending` until run."""

    pending: list = []
    instances: list = []

    def __init__(self):
        self.active, self.interval, self.slots = False, 0, []
        FakeTimer.instances.append(self)

    def setInterval(self, milliseconds):
        self.interval = milliseconds

    def connect(self, signal, slot):
        self.slots.append(slot)

    def start(self):
        self.active = True

    def stop(self):
        self.active = False

    @staticmethod
    def singleShot(milliseconds, callback):
        FakeTimer.pending.append(callback)


def run_pending_single_shots() -> int:
    """What Qt's event loop does once the current event has returned."""
    count = 0
    while FakeTimer.pending:
        FakeTimer.pending.pop(0)()
        count += 1
    return count


@contextlib.contextmanager
def _replaced_modules(replacements: dict):
    """Replace these sys.modules entries only (mock.patch.dict would also drop every module first
    imported meanwhile, so later imports would make second copies of them)."""
    saved = {name: sys.modules.get(name) for name in replacements}
    sys.modules.update(replacements)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


class FakeState(types.SimpleNamespace):
    """What the fakes saw: dialogs, answers, restarts; the interaction and selection nodes."""


def _fake_scripted_loadable_module(mrml, state):
    """slicer.ScriptedLoadableModule's four base classes, as far as the module uses them."""
    class ScriptedLoadableModule:
        def __init__(self, parent):
            self.parent = parent

    class ScriptedLoadableModuleWidget:
        def __init__(self, parent=None):
            self.parent = parent

        def setup(self):
            self.layout = mock.MagicMock(name="layout")

    class ScriptedLoadableModuleLogic:
        def __init__(self, parent=None):
            self._parameterNode = None

        def getParameterNode(self):
            # As Slicer: the scene's parameter node, a new one after Close Scene removed it.
            if self._parameterNode is None or self._parameterNode.GetScene() is not mrml.scene:
                self._parameterNode = mrml.scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")
            return self._parameterNode

    class ScriptedLoadableModuleTest(unittest.TestCase):
        def delayDisplay(self, message, msec=None):
            state.messages.append(message)
            print(message, flush=True)

    return (ScriptedLoadableModule, ScriptedLoadableModuleWidget, ScriptedLoadableModuleLogic,
            ScriptedLoadableModuleTest)


def load_module_file(mrml, temporary_path: str, stack: contextlib.ExitStack, python_executable: str = sys.executable):
    """Import AttentionUNetSegment.py with the fakes in place (undone when `stack` closes)."""
    from AttentionUNetSegmentLib.scene import processes

    state = FakeState(errors=[], confirmations=[], answer=True, restart_answer=False, restarted=False,
                      folder_answer="", messages=[])
    ScriptedLoadableModule, ScriptedLoadableModuleWidget, ScriptedLoadableModuleLogic, ScriptedLoadableModuleTest = \
        _fake_scripted_loadable_module(mrml, state)
    FakeTimer.pending, FakeTimer.instances = [], []
    fake_qt = types.SimpleNamespace(
        QTimer=FakeTimer, QIcon=lambda path: ("icon", path),
        QFileDialog=types.SimpleNamespace(getExistingDirectory=lambda parent, caption, start: state.folder_answer))
    modules = {
        "qt": fake_qt,
        "slicer.i18n": types.SimpleNamespace(tr=lambda text: text, translate=lambda context, text: text),
        "slicer.parameterNodeWrapper": types.SimpleNamespace(
            parameterNodeWrapper=fake_parameter_node_wrapper, WithinRange=lambda low, high: None),
        "slicer.ScriptedLoadableModule": types.SimpleNamespace(
            ScriptedLoadableModule=ScriptedLoadableModule, ScriptedLoadableModuleWidget=ScriptedLoadableModuleWidget,
            ScriptedLoadableModuleLogic=ScriptedLoadableModuleLogic,
            ScriptedLoadableModuleTest=ScriptedLoadableModuleTest),
    }
    stack.enter_context(_replaced_modules(modules))
    state.interaction = mrml.scene.AddNewNodeByClass("vtkMRMLInteractionNode")
    state.selection = mrml.scene.AddNewNodeByClass("vtkMRMLSelectionNode")
    app = types.SimpleNamespace(
        processEvents=lambda: None, temporaryPath=temporary_path,
        applicationLogic=lambda: types.SimpleNamespace(GetInteractionNode=lambda: state.interaction,
                                                       GetSelectionNode=lambda: state.selection))

    def confirm(text, **kwargs):
        state.confirmations.append(text)
        return state.answer

    def restart():
        state.restarted = True

    def child_widget_variables(widget):
        names = {w.get("name"): w.get("class") for w in ET.parse(UI_FILE).getroot().iter("widget")}
        return types.SimpleNamespace(**{name: FakeComboBox(name) if cls == "QComboBox" else FakeWidget(name)
                                        for name, cls in names.items()})

    patches = [
        (slicer, "app", app), (slicer, "mrmlScene", mrml.scene),
        (slicer, "modules", types.SimpleNamespace(segmentations=types.SimpleNamespace(
            logic=lambda: mrml.segmentations_logic))),
        (slicer.util, "loadUI", lambda path: FakeWidget("AttentionUNetSegment") if Path(path).is_file() else None),
        (slicer.util, "childWidgetVariables", child_widget_variables),
        (slicer.util, "confirmOkCancelDisplay", confirm),
        (slicer.util, "confirmYesNoDisplay", lambda text, **kwargs: state.restart_answer),
        (slicer.util, "errorDisplay", lambda text, **kwargs: state.errors.append((text, kwargs))),
        (slicer.util, "WaitCursor", contextlib.nullcontext),
        (slicer.util, "mainWindow", lambda: None),
        (slicer.util, "restart", restart),
        # Inside Slicer this is PythonSlicer; here the job's process runs this (or the given) Python.
        (processes, "python_executable", lambda: python_executable),
    ]
    for target, name, value in patches:
        stack.enter_context(mock.patch.object(target, name, value, create=True))
    spec = importlib.util.spec_from_file_location("AttentionUNetSegment", MODULE_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.fakes = state

    def module_widget(name):          # slicer.util.getModuleWidget: one widget, set up and entered
        if not hasattr(state, "widget"):
            state.widget = module.AttentionUNetSegmentWidget(parent=types.SimpleNamespace(isEntered=True))
            state.widget.setup()
            stack.callback(state.widget.cleanup)
        state.widget.enter()
        return state.widget

    for name, value in [("selectModule", lambda name: None), ("getModuleWidget", module_widget)]:
        stack.enter_context(mock.patch.object(slicer.util, name, value, create=True))
    return module
