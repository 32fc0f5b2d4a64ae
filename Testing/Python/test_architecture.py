"""The package's import rule (import_rules.py, the one place it is written) holds for the code,
and the checker catches each kind of violation when one is planted in a small fake tree.

See docs/architecture.md for the rule in words.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import import_rules
import pytest
from import_rules import ALLOWED, MODULE_FILE, PACKAGE, cycles, read_tree, violations

MODULE_DIR = Path(__file__).resolve().parents[2] / "AttentionUNetSegment"
LIB_DIR = MODULE_DIR / PACKAGE
MODULE_FILE_PATH = MODULE_DIR / "AttentionUNetSegment.py"


def test_every_subpackage_is_known():
    folders = {p.name for p in LIB_DIR.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert folders == set(ALLOWED) - {MODULE_FILE}, "add the new sub-package to import_rules.ALLOWED " \
                                                    "(and docs/architecture.md)"
    loose = sorted(p.name for p in LIB_DIR.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert not loose, f"every module belongs in a sub-package: {loose}"


def test_the_package_and_the_module_file_keep_the_rule():
    assert violations(LIB_DIR, MODULE_FILE_PATH) == []


def test_the_module_file_is_the_qt_wiring():
    found = read_tree(LIB_DIR, MODULE_FILE_PATH).imports[import_rules.MODULE_FILE_NAME]
    assert {"qt", "slicer", "vtk"} <= import_rules.families(found.external_at_load)


# --------------------------------------------------------------------------- planted violations


def _plant(tmp_path: Path, files: dict[str, str]) -> Path:
    """A fake package (and module file) from {relative path: source}; every folder gets an
    __init__.py unless one is given."""
    lib = tmp_path / PACKAGE
    for name, source in {"__init__.py": "", **files}.items():
        path = tmp_path / name if name == "AttentionUNetSegment.py" else lib / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")
    for folder in [p for p in lib.rglob("*") if p.is_dir()]:
        (folder / "__init__.py").touch(exist_ok=True)
    return lib


_TRAINING = {"training/loop.py": "def run():\n    return 1\n"}


@pytest.mark.parametrize("source", [
    "import importlib\nLOOP = importlib.import_module('AttentionUNetSegmentLib.training.loop')\n",
    "import importlib\ndef later():\n    return importlib.import_module('..training.loop', __package__)\n",
    "from importlib import import_module\nloop = import_module('.loop', package='AttentionUNetSegmentLib.training')\n",
    "training = __import__('AttentionUNetSegmentLib.training.loop')\n",
], ids=["absolute", "relative-in-a-function", "imported-function", "dunder-import"])
def test_a_dynamic_import_of_training_code_in_the_core_is_caught(tmp_path, source):
    lib = _plant(tmp_path, {"core/engine.py": source, **_TRAINING})
    assert violations(lib) == [
        f"{PACKAGE}.core.engine imports {PACKAGE}.training.loop (core may import only [])"]


def test_a_dynamic_import_the_checker_cannot_read_is_caught_outside_the_cli(tmp_path):
    source = "import importlib\ndef load(name):\n    return importlib.import_module(f'..{name}', __package__)\n"
    lib = _plant(tmp_path, {"core/engine.py": source, "cli/main.py": source})
    assert violations(lib) == [f"{PACKAGE}.core.engine:3: a dynamic import whose target the checker cannot read"]


@pytest.mark.parametrize("statement, name", [
    ("import PythonQt", "PythonQt"),
    ("from vtkmodules.vtkCommonCore import vtkObject", "vtkmodules.vtkCommonCore"),
    ("import qSlicerBaseQTGUIPythonQt", "qSlicerBaseQTGUIPythonQt"),
    ("from MRMLCorePython import vtkMRMLScene", "MRMLCorePython"),
    ("def draw():\n    import matplotlib.pyplot as plt", "matplotlib.pyplot"),
])
def test_a_gui_or_plotting_library_in_the_core_is_caught(tmp_path, statement, name):
    lib = _plant(tmp_path, {"core/engine.py": statement + "\n"})
    (found,) = violations(lib)
    assert found.startswith(f"{PACKAGE}.core.engine imports {name}") and "is forbidden there" in found


def test_a_cycle_through_a_package_init_is_caught(tmp_path):
    lib = _plant(tmp_path, {
        "core/__init__.py": "from .pipeline import segment\nVERSION = 1\n",
        "core/pipeline.py": "from .inference import predict\ndef segment():\n    return predict()\n",
        # A name of the package, not a module: this needs core/__init__.py, which needs pipeline.
        "core/inference.py": "from . import VERSION\ndef predict():\n    return VERSION\n",
    })
    assert violations(lib) == [f"import cycle: {PACKAGE}.core -> {PACKAGE}.core.inference -> "
                               f"{PACKAGE}.core.pipeline"]


def test_importing_a_sibling_module_through_its_package_is_no_cycle(tmp_path):
    lib = _plant(tmp_path, {
        "core/__init__.py": "from .pipeline import segment\n",
        "core/pipeline.py": "from . import errors\ndef segment():\n    return errors\n",
        "core/errors.py": "",
    })
    assert violations(lib) == []


@pytest.mark.parametrize("statement, expected", [
    ("from AttentionUNetSegmentLib.training.loop import run",
     f"AttentionUNetSegment imports {PACKAGE}.training.loop (module file may import only ['core', 'files', 'scene'])"),
    ("import torch", "AttentionUNetSegment imports torch (torch is forbidden there)"),
    ("from AttentionUNetSegmentLib.scene import job", "AttentionUNetSegment loads torch when it is imported "
                                                      f"through {PACKAGE}.scene.job"),
])
def test_package_imports_in_the_module_file_are_checked(tmp_path, statement, expected):
    lib = _plant(tmp_path, {"AttentionUNetSegment.py": statement + "\n", **_TRAINING,
                            "scene/job.py": "import torch\n"})
    found = violations(lib, tmp_path / "AttentionUNetSegment.py")
    assert expected in found, found


def test_torch_imported_lazily_by_the_scene_is_allowed_and_at_load_is_not(tmp_path):
    lib = _plant(tmp_path, {"scene/results.py": "def run():\n    import torch\n",
                            "scene/job.py": "from ..service import contract\n",
                            "service/contract.py": "from ..core import pipeline\n",
                            "core/pipeline.py": "import torch\n"})
    assert violations(lib) == [f"{PACKAGE}.scene.job loads torch when it is imported through "
                               f"{PACKAGE}.core.pipeline"]


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_loading_the_module_file_loads_neither_numpy_nor_simpleitk():
    """Issue 19, defect 7: Slicer imports every module file at start-up; numpy and SimpleITK are
    imported when the module is first used, not by loading it (nor by what it loads)."""
    tree = read_tree(LIB_DIR, MODULE_FILE_PATH)
    loading = import_rules.loaded_with(tree, import_rules.MODULE_FILE_NAME)
    heavy = sorted(f"{module}: {name}" for module in loading for name in tree.imports[module].external_at_load
                   if name.split(".")[0] in ("numpy", "SimpleITK") or name.startswith("vtk.util.numpy"))
    assert heavy == []


def test_numpy_loaded_by_the_module_file_is_caught_and_type_checking_imports_are_not(tmp_path):
    lib = _plant(tmp_path, {"AttentionUNetSegment.py": "from AttentionUNetSegmentLib.scene import logic\n",
                            "scene/logic.py": "from typing import TYPE_CHECKING\nfrom . import nodes\n"
                                              "if TYPE_CHECKING:\n    import SimpleITK\n",
                            "scene/nodes.py": "from vtk.util import numpy_support\n"})
    assert violations(lib, tmp_path / "AttentionUNetSegment.py") == [
        f"AttentionUNetSegment loads numpy when it is imported through {PACKAGE}.scene.nodes "
        "(import it where it is used)"]
