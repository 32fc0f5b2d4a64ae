"""What the Slicer Extensions Index (the catalogue) asks of an extension, checked from the files:
a LICENSE at the root, the catalogue entry (a JSON file that follows Slicer's catalog entry
schema v1.0.1), homepage, icon and screenshot URLs that resolve to files of this repository from
one configurable base, and a stated minimum Slicer version that the build checks."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
CMAKE_FILE = REPO / "CMakeLists.txt"
ENTRY = REPO / "ExtensionsIndex" / "AttentionUNetSegment.json"
#: The fields schema v1.0.1 allows ("additionalProperties": false) and those it requires.
SCHEMA_FIELDS = {"$schema", "build_dependencies", "build_subdirectory", "category", "scm_revision", "scm_type",
                 "scm_url", "tier"}
SCHEMA_REQUIRED = {"$schema", "category", "scm_url"}


def cmake_variables() -> dict[str, str]:
    """The `set(NAME "value" ...)` of CMakeLists.txt, `${...}` resolved in order."""
    values: dict[str, str] = {}
    for name, value in re.findall(r'set\((\w+)\s+"([^"]*)"', CMAKE_FILE.read_text()):
        values[name] = re.sub(r"\$\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), value)
    return values


def test_license_file_is_the_apache_license_the_package_declares():
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert 'license = "Apache-2.0"' in (REPO / "pyproject.toml").read_text(encoding="utf-8")


def test_catalogue_entry_follows_the_schema_and_agrees_with_cmake():
    entry = json.loads(ENTRY.read_text(encoding="utf-8"))
    variables = cmake_variables()
    assert set(entry) <= SCHEMA_FIELDS and SCHEMA_REQUIRED <= set(entry)
    assert entry["$schema"].endswith("/slicer-extension-catalog-entry-schema-v1.0.1.json#")
    assert entry["category"] == variables["EXTENSION_CATEGORY"]
    assert entry["build_dependencies"] == variables["EXTENSION_DEPENDS"].split(";")
    assert entry["scm_url"] == variables["EXTENSION_SOURCE_URL"] + ".git"
    assert entry["build_subdirectory"] == "." and (REPO / entry["build_subdirectory"] / "CMakeLists.txt").is_file()


def test_urls_resolve_to_files_of_this_repository_from_one_base():
    variables = cmake_variables()
    base = variables["EXTENSION_RAW_BASE_URL"]
    assert base.startswith(variables["EXTENSION_SOURCE_URL"].replace("https://github.com/",
                                                                      "https://raw.githubusercontent.com/"))
    assert variables["EXTENSION_HOMEPAGE"].startswith(variables["EXTENSION_SOURCE_URL"])
    urls = [variables["EXTENSION_ICONURL"], *variables["EXTENSION_SCREENSHOTURLS"].split(" ")]
    for url in urls:
        assert url.startswith(base + "/"), url
        assert (REPO / url[len(base) + 1:]).is_file(), f"{url} names no file of this repository"
    assert re.search(r'set\(EXTENSION_RAW_BASE_URL "[^"]+"\s+CACHE STRING', CMAKE_FILE.read_text())


def test_minimum_slicer_version_is_stated_and_checked():
    minimum = cmake_variables()["EXTENSION_MINIMUM_SLICER_VERSION"]
    assert re.fullmatch(r"\d+\.\d+", minimum)
    assert "VERSION_LESS ${EXTENSION_MINIMUM_SLICER_VERSION}" in CMAKE_FILE.read_text()
    assert f"Slicer {minimum} or newer" in (REPO / "docs" / "slicer.md").read_text(encoding="utf-8")


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
def test_configuring_against_an_older_slicer_stops_with_a_clear_message(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    text = CMAKE_FILE.read_text()
    # Only the part up to the version check: the rest needs the real build macros.
    (source / "CMakeLists.txt").write_text(text[:text.index("# Scripted module")] + "\n")
    fake = tmp_path / "FakeSlicer"
    fake.mkdir()
    (fake / "SlicerConfig.cmake").write_text(
        "set(Slicer_VERSION_MAJOR 5)\nset(Slicer_VERSION_MINOR 2)\nset(Slicer_USE_FILE "
        "${CMAKE_CURRENT_LIST_DIR}/Empty.cmake)\nset(Slicer_FOUND TRUE)\n")
    (fake / "Empty.cmake").write_text("")
    result = subprocess.run(["cmake", "-S", str(source), "-B", str(tmp_path / "build"), f"-DSlicer_DIR={fake}"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "needs Slicer" in result.stdout + result.stderr and "5.2" in result.stdout + result.stderr
