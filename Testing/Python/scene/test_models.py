"""Which model file a run uses, with one clear line when there is none; where Resources/ is."""

from __future__ import annotations

from pathlib import Path

import pytest
from AttentionUNetSegmentLib.core.errors import InputError
from AttentionUNetSegmentLib.files import resources
from AttentionUNetSegmentLib.files.resources import DEFAULT_MODEL_NAME
from AttentionUNetSegmentLib.scene import models


def test_bundled_models_default_first_and_custom_paths(tmp_path):
    (tmp_path / "Models").mkdir()
    for name in ("a_model.pt", DEFAULT_MODEL_NAME, "notes.txt", "z_model.pt"):
        (tmp_path / "Models" / name).write_text("")
    paths = resources.bundled_model_paths(tmp_path)
    assert [p.name for p in paths] == [DEFAULT_MODEL_NAME, "a_model.pt", "z_model.pt"]
    assert [c for _, c in models.model_choices(tmp_path)] == [DEFAULT_MODEL_NAME, "a_model.pt", "z_model.pt",
                                                              models.CUSTOM_MODEL]
    assert models.selected_model_path("", "", tmp_path) == str(paths[0])
    assert models.selected_model_path("a_model.pt", "", tmp_path) == str(paths[1])
    assert models.selected_model_path(models.CUSTOM_MODEL, str(tmp_path), tmp_path) == str(tmp_path)
    with pytest.raises(InputError, match="choose your model file"):
        models.selected_model_path(models.CUSTOM_MODEL, "", tmp_path)
    with pytest.raises(InputError, match="missing.pt: does not exist"):
        models.selected_model_path(models.CUSTOM_MODEL, str(tmp_path / "missing.pt"), tmp_path)
    with pytest.raises(InputError, match="bundled model is missing"):
        models.selected_model_path("gone.pt", "", tmp_path)
    assert resources.bundled_model_paths(tmp_path / "nowhere") == []


def test_resources_are_found_installed_and_in_the_source_tree(tmp_path):
    installed = tmp_path / "qt-scripted-modules"
    (installed / "Resources").mkdir(parents=True)
    assert resources.resources_folder(installed / "AttentionUNetSegmentLib") == installed / "Resources"
    source = tmp_path / "repo" / "AttentionUNetSegment"
    (source.parent / "Resources").mkdir(parents=True)
    assert resources.resources_folder(source / "AttentionUNetSegmentLib") == source.parent / "Resources"
    # This checkout: the bundled default model is where the command line and the module look.
    repository = Path(__file__).resolve().parents[3]
    assert resources.resources_folder() == repository / "Resources"
    assert resources.default_model_path() == repository / "Resources" / "Models" / DEFAULT_MODEL_NAME
    assert resources.bundled_model_paths()[0] == resources.default_model_path()
