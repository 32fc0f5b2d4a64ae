"""The extension's Resources/ folder and what it holds: the bundled models (the default one
first), the colour table, the UI. The one place that knows where they are, for the command line
and the Slicer module alike.

Source tree:        <repository>/AttentionUNetSegment/AttentionUNetSegmentLib, <repository>/Resources
Installed in Slicer: qt-scripted-modules/AttentionUNetSegmentLib beside qt-scripted-modules/Resources
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

#: The bundled default model's file name in Resources/Models: segments without clicks.
DEFAULT_MODEL_NAME = "pancreas_phantom_attention_unet.pt"
#: The bundled click-conditioned model: what clicks use when no model is named.
CLICK_MODEL_NAME = "click_attention_unet.pt"
_LIB = Path(__file__).resolve().parents[1]  # files/resources.py -> AttentionUNetSegmentLib


def resources_folder(lib_dir: Path = _LIB) -> Path:
    """Resources/ beside the package (an installed extension), else at the repository root."""
    candidates = [lib_dir.parent / "Resources", lib_dir.parents[1] / "Resources"]
    return next((folder for folder in candidates if folder.is_dir()), candidates[-1])


def default_model_path(resources: Optional[Path] = None, clicks: bool = False) -> Path:
    """The bundled model for a run without clicks (pancreas_phantom_attention_unet.pt) or with
    them (click_attention_unet.pt); it may be missing: callers say so."""
    return (resources or resources_folder()) / "Models" / (CLICK_MODEL_NAME if clicks else DEFAULT_MODEL_NAME)


def bundled_model_paths(resources: Optional[Path] = None) -> list[Path]:
    """The .pt files in Resources/Models, the default model first (empty without the folder)."""
    folder = (resources or resources_folder()) / "Models"
    if not folder.is_dir():
        return []
    paths = sorted(p for p in folder.glob("*.pt") if p.is_file())
    return sorted(paths, key=lambda p: p.name != DEFAULT_MODEL_NAME)   # stable: the rest stay sorted


def attention_color_table_path() -> Path:
    """The overlays' colour table in Slicer's text format (made by reports.figures)."""
    return resources_folder() / "ColorTables" / "AttentionInferno.txt"
