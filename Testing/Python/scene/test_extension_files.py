"""The Slicer extension's files hang together (no Slicer needed).

- every file CMakeLists.txt lists exists, every Lib `.py` file and every resource is listed,
  and the configured layout puts the module, its Lib and Resources/ side by side (checked with
  cmake and a stand-in for Slicer's build macros when cmake is installed);
- every widget the module file uses (`self.ui.X`) is in the Qt Designer file, and every
  `SlicerParameterName` there is a parameter-node field;
(The import rules, the module file's included, are Testing/Python/import_rules.py's.)
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
MODULE_DIR = REPO / "AttentionUNetSegment"
LIB_DIR = MODULE_DIR / "AttentionUNetSegmentLib"
MODULE_FILE = MODULE_DIR / "AttentionUNetSegment.py"
UI_FILE = REPO / "Resources" / "UI" / "AttentionUNetSegment.ui"
CMAKE_FILE = REPO / "CMakeLists.txt"
SCENE_FILES = sorted((LIB_DIR / "scene").glob("*.py"))
#: What Slicer runs: the runtime packages whole, and of the command line `segment` and `click-worker`.
SLICER_PACKAGES = ("core", "files", "service", "scene")
SLICER_CLI_FILES = ("cli/__init__.py", "cli/argtypes.py", "cli/click_worker.py", "cli/main.py", "cli/segment.py")


def _lib_files(pattern: str = "**/*.py") -> list[str]:
    return sorted(str(p.relative_to(LIB_DIR)) for p in LIB_DIR.glob(pattern) if "__pycache__" not in p.parts)


def _slicer_runtime_files() -> list[str]:
    return sorted(["__init__.py", "__main__.py", *SLICER_CLI_FILES,
                   *(f for package in SLICER_PACKAGES for f in _lib_files(f"{package}/*.py"))])
#: Resources that are not installed with the module: pictures for the README and the extension
#: index, and the scripts/notes that reproduce resources (e.g. Models/recipe.sh).
NOT_INSTALLED = ("Resources/Screenshots/",)
NOT_INSTALLED_SUFFIXES = (".sh", ".py", ".md")


def _cmake_list(name: str) -> list[str]:
    text = CMAKE_FILE.read_text()
    match = re.search(rf"set\({name}\s+(.*?)\)", text, re.S)
    assert match, f"CMakeLists.txt has no set({name} ...)"
    items = [line.split("#")[0].strip() for line in match.group(1).splitlines()]
    return [item.replace("${MODULE_NAME}", "AttentionUNetSegment") for item in items if item]


def test_cmake_lists_exist_and_cover_every_lib_file_and_resource():
    sources = _cmake_list("MODULE_PYTHON_SOURCES")
    resources = _cmake_list("MODULE_PYTHON_RESOURCES")
    assert "AttentionUNetSegment.py" in sources
    for required in ("Resources/Icons/AttentionUNetSegment.png", "Resources/UI/AttentionUNetSegment.ui",
                     "Resources/ColorTables/AttentionInferno.txt"):
        assert required in resources
    problems = []
    runtime = [f"AttentionUNetSegmentLib/{f}" for f in _slicer_runtime_files()]
    unlisted = [f for f in runtime if f not in sources]
    if unlisted:
        problems.append(f"runtime files not listed in CMakeLists.txt MODULE_PYTHON_SOURCES: {unlisted}")
    not_runtime = [s for s in sources if s != "AttentionUNetSegment.py" and s not in runtime]
    if not_runtime:
        problems.append(f"CMakeLists.txt ships files Slicer does not run (training, phantoms, figures...): "
                        f"{not_runtime}")
    on_disk = sorted(str(p.relative_to(REPO)) for p in (REPO / "Resources").rglob("*")
                     if p.is_file() and not str(p.relative_to(REPO)).startswith(NOT_INSTALLED)
                     and p.suffix not in NOT_INSTALLED_SUFFIXES and p.name != ".gitkeep")
    unlisted_resources = sorted(set(on_disk) - set(resources))
    if unlisted_resources:
        problems.append(f"resources not listed in CMakeLists.txt MODULE_PYTHON_RESOURCES: {unlisted_resources}")
    missing = [s for s in sources if not (MODULE_DIR / s).is_file()] + \
              [r for r in resources if not (REPO / r).is_file()]
    if missing:
        problems.append(f"listed in CMakeLists.txt but missing: {missing}" +
                        (" (the bundled default model comes from training; see docs/training.md)"
                         if any(m.startswith("Resources/Models/") for m in missing) else ""))
    assert not problems, "\n".join(problems)


def test_cmake_extension_metadata_and_self_test():
    text = CMAKE_FILE.read_text()
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        assert re.search(rf'set\({key} "[^"]+"\)', text), key
    assert 'set(EXTENSION_CATEGORY "Segmentation")' in text
    assert re.search(r'set\(EXTENSION_DEPENDS "?PyTorch"?\)', text)
    assert "slicerMacroBuildScriptedModule(" in text and "WITH_GENERIC_TESTS" in text
    assert "slicer_add_python_unittest(" in text
    # (That the icon and screenshot URLs name files of this repository: test_catalogue.py.)


# A stand-in for Slicer's build macros with the placement rules of slicerMacroBuildScriptedModule /
# ctkMacroCompilePythonScript: relative scripts and resources keep their path under the destination,
# absolute scripts are placed relative to the current binary folder; listed files must exist.
_FAKE_SLICER_CONFIG = r"""
set(Slicer_USE_FILE ${CMAKE_CURRENT_LIST_DIR}/UseSlicer.cmake)
set(Slicer_EXTENSION_GENERATE_CONFIG ${CMAKE_CURRENT_LIST_DIR}/Empty.cmake)
set(Slicer_EXTENSION_CPACK ${CMAKE_CURRENT_LIST_DIR}/Empty.cmake)
set(Slicer_FOUND TRUE)
set(Slicer_VERSION_MAJOR 5)
set(Slicer_VERSION_MINOR 8)
"""
_FAKE_USE_SLICER = r"""
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR lib/Slicer-5.8/qt-scripted-modules)
set(BUILD_TESTING OFF)
macro(slicerMacroBuildScriptedModule)
  cmake_parse_arguments(MY "WITH_GENERIC_TESTS" "NAME" "SCRIPTS;RESOURCES" ${ARGN})
  set(dest ${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR})
  foreach(file ${MY_SCRIPTS})
    if(IS_ABSOLUTE ${file})
      set(src ${file})
      file(RELATIVE_PATH tgt ${CMAKE_CURRENT_BINARY_DIR} ${file})
    else()
      set(src ${CMAKE_CURRENT_SOURCE_DIR}/${file})
      set(tgt ${file})
    endif()
    if(NOT EXISTS ${src})
      message(FATAL_ERROR "nonexistent script ${file}")
    endif()
    get_filename_component(dir ${dest}/${tgt} DIRECTORY)
    file(COPY ${src} DESTINATION ${dir})
  endforeach()
  foreach(file ${MY_RESOURCES})
    if(NOT EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${file})
      message(FATAL_ERROR "nonexistent resource ${file}")
    endif()
    get_filename_component(dir ${dest}/${file} DIRECTORY)
    file(COPY ${CMAKE_CURRENT_SOURCE_DIR}/${file} DESTINATION ${dir})
  endforeach()
endmacro()
"""


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
def test_cmake_configures_the_installed_layout(tmp_path):
    # A copy of the extension's sources, so that a resource still missing (the default model, which
    # training produces) is a placeholder here and this test checks only the layout.
    source = tmp_path / "source"
    source.mkdir()
    shutil.copy2(CMAKE_FILE, source / "CMakeLists.txt")
    shutil.copytree(MODULE_DIR, source / "AttentionUNetSegment",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(REPO / "Resources", source / "Resources")
    for resource in _cmake_list("MODULE_PYTHON_RESOURCES"):
        if not (source / resource).exists():
            (source / resource).parent.mkdir(parents=True, exist_ok=True)
            (source / resource).write_bytes(b"")
    fake = tmp_path / "FakeSlicer"
    fake.mkdir()
    (fake / "SlicerConfig.cmake").write_text(_FAKE_SLICER_CONFIG)
    (fake / "UseSlicer.cmake").write_text(_FAKE_USE_SLICER)
    (fake / "Empty.cmake").write_text("")
    build = tmp_path / "build"
    result = subprocess.run(["cmake", "-S", str(source), "-B", str(build), f"-DSlicer_DIR={fake}"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    modules = build / "lib" / "Slicer-5.8" / "qt-scripted-modules"
    # Slicer finds the module at the top of qt-scripted-modules; the module finds Resources/ beside it.
    assert (modules / "AttentionUNetSegment.py").is_file()
    assert (modules / "AttentionUNetSegmentLib" / "scene" / "logic.py").is_file()
    assert (modules / "AttentionUNetSegmentLib" / "__main__.py").is_file()
    assert (modules / "Resources" / "UI" / "AttentionUNetSegment.ui").is_file()
    assert (modules / "Resources" / "Icons" / "AttentionUNetSegment.png").is_file()
    installed_lib = modules / "AttentionUNetSegmentLib"
    installed = sorted(str(p.relative_to(installed_lib)) for p in installed_lib.glob("**/*.py"))
    assert installed == _slicer_runtime_files()
    # The background process's entry point works in the slim install: segment is there, train is not.
    run = subprocess.run([sys.executable, "-m", "AttentionUNetSegmentLib", "--help"], cwd=modules,
                         env={**os.environ, "PYTHONPATH": str(modules)}, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "segment" in run.stdout and "train" not in run.stdout and "phantom" not in run.stdout


# ----------------------------------------------------------------------------------------------
# Module file and .ui
# ----------------------------------------------------------------------------------------------

def _ui_widget_names() -> set[str]:
    root = ET.parse(UI_FILE).getroot()
    return {w.get("name") for w in root.iter("widget")}


def test_every_widget_the_module_uses_is_in_the_ui_file():
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE_FILE.read_text()))
    assert used, "the module file uses no widgets?"
    missing = sorted(used - _ui_widget_names())
    assert not missing, f"widgets used by the module but missing from {UI_FILE.name}: {missing}"


def _parameter_fields() -> set[str]:
    tree = ast.parse(MODULE_FILE.read_text())
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(
                getattr(d, "id", None) == "parameterNodeWrapper" for d in node.decorator_list):
            return {s.target.id for s in node.body if isinstance(s, ast.AnnAssign)}
    raise AssertionError("no @parameterNodeWrapper class in the module file")


def test_ui_parameter_names_are_parameter_node_fields():
    root = ET.parse(UI_FILE).getroot()
    bound = {}
    for widget in root.iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[widget.get("name")] = prop.find("string").text
    assert bound, "no widget is bound to the parameter node"
    fields = _parameter_fields()
    assert set(bound.values()) <= fields, (bound, fields)
    assert {"inputVolume", "modelPath", "device", "overlap", "gate", "opacity", "outputSegmentation"} <= fields


def test_ui_file_is_qt_designer_xml_with_translatable_strings_marked():
    root = ET.parse(UI_FILE).getroot()
    assert root.tag == "ui" and root.find("widget").get("class") == "qMRMLWidget"
    for prop in root.iter("property"):
        if prop.get("name") in ("nodeTypes", "SlicerParameterName"):
            strings = prop.iter("string")
            if prop.get("name") == "nodeTypes":
                assert prop.find("stringlist").get("notr") == "true"
            else:
                assert all(s.text for s in strings)
