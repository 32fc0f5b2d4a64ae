"""Which model file a run uses, with one clear line when there is none."""

from __future__ import annotations

import pytest
from AttentionUNetSegmentLib.core.errors import InputError
from AttentionUNetSegmentLib.scene import models


def test_bundled_models_default_first_and_custom_paths(tmp_path):
    (tmp_path / "Models").mkdir()
    for name in ("a_model.pt", models.DEFAULT_MODEL_FILE, "notes.txt"):
        (tmp_path / "Models" / name).write_text("")
    paths = models.bundled_model_paths(str(tmp_path))
    assert [p.split("/")[-1] for p in paths] == [models.DEFAULT_MODEL_FILE, "a_model.pt"]
    assert [c for _, c in models.model_choices(str(tmp_path))] == [models.DEFAULT_MODEL_FILE, "a_model.pt",
                                                                    models.CUSTOM_MODEL]
    assert models.selected_model_path("", "", str(tmp_path)) == paths[0]
    assert models.selected_model_path("a_model.pt", "", str(tmp_path)) == paths[1]
    assert models.selected_model_path(models.CUSTOM_MODEL, str(tmp_path), str(tmp_path)) == str(tmp_path)
    with pytest.raises(InputError, match="choose your model file"):
        models.selected_model_path(models.CUSTOM_MODEL, "", str(tmp_path))
    with pytest.raises(InputError, match="missing.pt: does not exist"):
        models.selected_model_path(models.CUSTOM_MODEL, str(tmp_path / "missing.pt"), str(tmp_path))
    with pytest.raises(InputError, match="bundled model is missing"):
        models.selected_model_path("gone.pt", "", str(tmp_path))
    assert models.bundled_model_paths(str(tmp_path / "nowhere")) == []


def test_resources_are_found_installed_and_in_the_source_tree(tmp_path):
    installed = tmp_path / "qt-scripted-modules"
    (installed / "Resources" / "UI").mkdir(parents=True)
    (installed / "Resources" / "UI" / "AttentionUNetSegment.ui").write_text("")
    assert models.resources_directory(str(installed)) == str(installed / "Resources")
    source = tmp_path / "repo" / "AttentionUNetSegment"
    (source.parent / "Resources" / "UI").mkdir(parents=True)
    (source.parent / "Resources" / "UI" / "AttentionUNetSegment.ui").write_text("")
    assert models.resources_directory(str(source)) == str(source.parent / "Resources")
