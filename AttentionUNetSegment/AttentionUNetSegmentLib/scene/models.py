"""Which model file a run uses: a bundled model from Resources/Models, or the user's file or folder."""

from __future__ import annotations

import os

from ..core.errors import InputError

DEFAULT_MODEL_FILE = "pancreas_phantom_attention_unet.pt"
#: The model choice that means "the path in the model path field".
CUSTOM_MODEL = "custom"


def resources_directory(module_dir: str) -> str:
    """Resources/ beside the module file when installed, ../Resources in the source tree."""
    candidates = [os.path.join(module_dir, "Resources"), os.path.normpath(os.path.join(module_dir, "..", "Resources"))]
    for candidate in candidates:
        if os.path.isfile(os.path.join(candidate, "UI", "AttentionUNetSegment.ui")):
            return candidate
    return candidates[0]


def bundled_model_paths(resources_dir: str) -> list[str]:
    """The .pt files in <resources_dir>/Models, the default model first."""
    folder = os.path.join(resources_dir, "Models")
    if not os.path.isdir(folder):
        return []
    names = sorted(n for n in os.listdir(folder) if n.endswith(".pt"))
    if DEFAULT_MODEL_FILE in names:
        names.remove(DEFAULT_MODEL_FILE)
        names.insert(0, DEFAULT_MODEL_FILE)
    return [os.path.join(folder, n) for n in names]


def selected_model_path(model: str, model_path: str, resources_dir: str) -> str:
    """The model file or folder to run for a choice (a bundled file name, "" = default, or
    CUSTOM_MODEL with `model_path`); InputError with one clear line when there is none."""
    if model == CUSTOM_MODEL:
        if not model_path:
            raise InputError(None, "choose your model file (.pt) or model folder")
        if not os.path.exists(model_path):
            raise InputError(model_path, "does not exist; choose a model file (.pt) or folder")
        return model_path
    bundled = bundled_model_paths(resources_dir)
    for path in bundled:
        if os.path.basename(path) == (model or DEFAULT_MODEL_FILE):
            return path
    if not model and bundled:
        return bundled[0]
    raise InputError(os.path.join(resources_dir, "Models", model or DEFAULT_MODEL_FILE),
                     "bundled model is missing; reinstall the extension or choose a model file")


def model_choices(resources_dir: str) -> list[tuple[str, str]]:
    """(label, choice) items of the model menu: the bundled models, then "file or folder"."""
    items = []
    for path in bundled_model_paths(resources_dir):
        name = os.path.basename(path)
        items.append(("Bundled: pancreas (synthetic phantoms, not for clinical use)" if name == DEFAULT_MODEL_FILE
                      else f"Bundled: {os.path.splitext(name)[0]}", name))
    return items + [("Model file or folder...", CUSTOM_MODEL)]
