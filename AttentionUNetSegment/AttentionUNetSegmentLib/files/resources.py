"""Where the extension's Resources/ folder is (bundled models, colour tables, UI)."""

from __future__ import annotations

from pathlib import Path

_LIB = Path(__file__).resolve().parents[1]  # files/resources.py -> AttentionUNetSegmentLib


def resources_folder() -> Path:
    """Resources/ of the source tree, or of an installed Slicer extension.

    Source tree: AttentionUNetSegmentLib -> AttentionUNetSegment -> repository root -> Resources.
    Installed extension (see CMakeLists.txt): the module, its Lib and Resources/ side by side.
    """
    candidates = [_LIB.parents[1] / "Resources", _LIB.parent / "Resources"]
    return next((folder for folder in candidates if (folder / "Models").is_dir()), candidates[0])


def attention_color_table_path() -> Path:
    """The overlays' colour table in Slicer's text format (made by reports.figures)."""
    return resources_folder() / "ColorTables" / "AttentionInferno.txt"
