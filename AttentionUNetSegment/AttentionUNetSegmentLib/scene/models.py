"""Which model file a run uses: a bundled model from Resources/Models (found by files.resources,
as the command line finds them), or the user's file or folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from ..core.errors import InputError
from ..files.resources import DEFAULT_MODEL_NAME, bundled_model_paths, default_model_path, resources_folder

#: The model choice that means "the path in the model path field".
CUSTOM_MODEL = "custom"


def selected_model_path(model: str, model_path: str, resources: Optional[Path] = None) -> str:
    """The model file or folder to run for a choice (a bundled file name, "" = default, or
    CUSTOM_MODEL with `model_path`); InputError with one clear line when there is none."""
    if model == CUSTOM_MODEL:
        if not model_path:
            raise InputError(None, "choose your model file (.pt) or model folder")
        if not os.path.exists(model_path):
            raise InputError(model_path, "does not exist; choose a model file (.pt) or folder")
        return model_path
    bundled = bundled_model_paths(resources)
    for path in bundled:
        if path.name == (model or DEFAULT_MODEL_NAME):
            return str(path)
    if not model and bundled:
        return str(bundled[0])
    folder = (resources or resources_folder()) / "Models"
    raise InputError(folder / (model or DEFAULT_MODEL_NAME),
                     "bundled model is missing; reinstall the extension or choose a model file")


def click_model_path(model: str, model_path: str, resources: Optional[Path] = None) -> str:
    """The model the click mode runs: the bundled click model when the choice is the bundled default
    (which has no click channels), else the chosen model. A chosen model without click channels is
    refused by the click worker with one line; the mode never falls back to another model."""
    if model in ("", DEFAULT_MODEL_NAME):
        path = default_model_path(resources, clicks=True)
        if not path.is_file():
            raise InputError(path, "bundled click model is missing; reinstall the extension or choose a model file")
        return str(path)
    return selected_model_path(model, model_path, resources)


def model_choices(resources: Optional[Path] = None) -> list[tuple[str, str]]:
    """(label, choice) items of the model menu: the bundled models, then "file or folder"."""
    items = []
    for path in bundled_model_paths(resources):
        items.append(("Bundled: pancreas (synthetic phantoms, not for clinical use)" if path.name == DEFAULT_MODEL_NAME
                      else f"Bundled: {path.stem}", path.name))
    return items + [("Model file or folder...", CUSTOM_MODEL)]
