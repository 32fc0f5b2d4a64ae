"""Shared pytest fixtures.

Real CT comes from ../shared/data beside the repository (CI clones the repo with shared/
next to it). Tests must never download anything.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Two cores are shared by the whole suite: keep torch from oversubscribing them.
os.environ.setdefault("OMP_NUM_THREADS", "2")

import torch  # noqa: E402

torch.set_num_threads(2)

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data" / "totalsegmentator-example"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def real_ct_path() -> Path:
    """Real abdominal CT: int16 HU, 122x101x30 (x, y, z), 3 mm, direction diag(-1, -1, 1)."""
    path = SHARED_DATA / "ct.nii.gz"
    assert path.exists(), f"test data missing: {path} (shared/ must sit beside the repository)"
    return path


@pytest.fixture(scope="session")
def real_labels_path() -> Path:
    """TotalSegmentator labels on the same grid; label 7 = pancreas (644 voxels)."""
    path = SHARED_DATA / "totalsegmentator_labels.nii.gz"
    assert path.exists(), f"test data missing: {path} (shared/ must sit beside the repository)"
    return path


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> Path:
    """A tiny randomly initialised model file (widths 4..64, 2 mm, 32^3 windows): plumbing, not skill."""
    from AttentionUNetSegmentLib.files.modelfile import save_model, tiny_test_model

    model, spec = tiny_test_model(seed=0)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_model(path, model, spec)
    return path


@pytest.fixture(scope="session")
def empty_model_path(tmp_path_factory) -> Path:
    """A tiny model whose output is background everywhere (fused head: zero weights, bias
    favouring class 0): what a user sees when a model finds nothing."""
    from AttentionUNetSegmentLib.files.modelfile import save_model, tiny_test_model

    model, spec = tiny_test_model(seed=0)
    with torch.no_grad():
        model.fuse.weight.zero_()
        model.fuse.bias.copy_(torch.tensor([10.0, -10.0]))
    path = tmp_path_factory.mktemp("model") / "finds_nothing.pt"
    save_model(path, model, spec)
    return path


@pytest.fixture(scope="session")
def tiny_click_model_path(tmp_path_factory) -> Path:
    """A tiny randomly initialised click-conditioned model file (4 input channels, 32^3 windows)."""
    from AttentionUNetSegmentLib.files.modelfile import save_model
    from AttentionUNetSegmentLib.training.interactive import (
        InteractiveTrainConfig, build_interactive_network, interactive_spec)

    config = InteractiveTrainConfig(widths=(4, 8, 16, 32, 64), window_zyx=(32, 32, 32))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        network = build_interactive_network(config)
    path = tmp_path_factory.mktemp("model") / "tiny_click.pt"
    save_model(path, network, interactive_spec(config, {"note": "random weights, never trained"}))
    return path
