"""modelfile: save/load round trip, safe loading, and one clear line for every broken model file."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import torch
from AttentionUNetSegmentLib.core.errors import ModelFileError
from AttentionUNetSegmentLib.core.labels import PANCREAS
from AttentionUNetSegmentLib.core.modelspec import FORMAT_VERSION, ModelSpec
from AttentionUNetSegmentLib.core.network import build_network
from AttentionUNetSegmentLib.files.modelfile import (
    default_model_path,
    load_model,
    read_model_spec,
    save_model,
    tiny_test_model,
)
from torch import nn


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    model, spec = tiny_test_model(seed=0)
    path = tmp_path_factory.mktemp("models") / "tiny.pt"
    save_model(path, model, spec)
    return model, spec, path


def _outputs(model: nn.Module, seed: int = 1) -> torch.Tensor:
    x = torch.randn(1, 1, 32, 32, 32, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model(x)


def test_round_trip_gives_identical_outputs_and_spec(tiny):
    model, spec, path = tiny
    loaded, loaded_spec = load_model(path)
    assert loaded_spec == spec
    assert not loaded.training and next(loaded.parameters()).device.type == "cpu"
    assert torch.equal(_outputs(model), _outputs(loaded))
    assert read_model_spec(path) == spec


def test_spec_is_plain_json_and_inverts():
    _, spec = tiny_test_model()
    data = spec.to_dict()
    assert ModelSpec.from_dict(json.loads(json.dumps(data))) == spec
    assert data["labels"][0]["name"] == "Pancreas" and data["format_version"] == FORMAT_VERSION
    assert spec.labels == [PANCREAS] and spec.patch_size_zyx == (32, 32, 32)


def test_unet3d_and_wrapped_models_round_trip(tmp_path):
    model, spec = tiny_test_model(seed=3, arch="unet3d")
    expected = _outputs(model)  # on the CPU, before wrapping
    # DataParallel prefixes every key with "module."; the file must hold the plain network's keys.
    # On a machine with one GPU, DataParallel moves the network there: wrap a copy, so the
    # comparison stays on the CPU whatever the machine (the file is loaded onto the CPU).
    save_model(tmp_path / "model.pt", nn.DataParallel(copy.deepcopy(model)), spec)
    loaded, loaded_spec = load_model(tmp_path)  # a folder means <folder>/model.pt
    assert loaded_spec.architecture == "unet3d"
    assert next(loaded.parameters()).device.type == "cpu"
    assert torch.equal(expected, _outputs(loaded))


def test_tiny_test_model_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a, _ = tiny_test_model(seed=7)
    assert torch.equal(torch.rand(3), expected)
    b, _ = tiny_test_model(seed=7)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_folder_resolution(tiny, tmp_path):
    _, spec, path = tiny
    single = tmp_path / "single"
    single.mkdir()
    (single / "weights.pt").write_bytes(path.read_bytes())
    assert load_model(single)[1] == spec  # the only .pt in the folder
    (single / "other.pt").write_bytes(path.read_bytes())
    with pytest.raises(ModelFileError, match="several .pt files"):
        load_model(single)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelFileError, match="no model.pt"):
        load_model(empty)


class Marker:
    """Unpickling this with a full pickle load would create a file: proof that code ran."""

    path = ""

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def _broken(case: str, tiny, tmp_path: Path) -> tuple[Path, str]:
    model, spec, good = tiny
    data = good.read_bytes()
    path = tmp_path / f"{case}.pt"
    if case == "missing":
        return path, "does not exist"
    if case == "empty":
        path.write_bytes(b"")
        return path, "is empty"
    if case == "truncated":
        path.write_bytes(data[: len(data) // 2])
        return path, "truncated"
    if case == "random_bytes":
        path.write_bytes(os.urandom(5000))
        return path, "not a PyTorch model file"
    if case == "bit_rot":  # damaged weights in an otherwise intact archive: torch.load alone accepts it
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 64]) + data[middle + 64:])
        return path, "checksum mismatch"
    if case == "plain_state_dict":
        torch.save(model.state_dict(), path)
        return path, "not an AttentionUNetSegment model file"
    if case == "foreign_dict":
        torch.save({"epoch": 3, "weights": torch.zeros(2)}, path)
        return path, "no 'format' key"
    if case == "future_version":
        payload = torch.load(good, weights_only=True)
        payload["format_version"] = FORMAT_VERSION + 1
        torch.save(payload, path)
        return path, f"model format version {FORMAT_VERSION + 1}, newer"
    if case == "unknown_architecture":
        payload = torch.load(good, weights_only=True)
        payload["spec"]["architecture"] = "transformer9000"
        torch.save(payload, path)
        return path, "unknown architecture 'transformer9000'"
    if case == "missing_spec_field":
        payload = torch.load(good, weights_only=True)
        del payload["spec"]["spacing_zyx"]
        torch.save(payload, path)
        return path, "lacks 'spacing_zyx'"
    if case == "missing_and_unexpected_keys":
        payload = torch.load(good, weights_only=True)
        key = next(iter(payload["state_dict"]))
        payload["state_dict"]["extra.weight"] = payload["state_dict"].pop(key)
        torch.save(payload, path)
        return path, f"1 missing ('{key}'); 1 unexpected ('extra.weight')"
    if case == "shape_mismatch":
        # Weights of a wider network under the tiny network's spec.
        payload = torch.load(good, weights_only=True)
        wider = build_network("attention_unet3d", in_channels=1, n_classes=2, widths=(8, 16, 32, 64, 128))
        payload["state_dict"] = wider.state_dict()
        torch.save(payload, path)
        return path, "of the wrong shape"
    if case == "custom_class":
        Marker.path = str(tmp_path / "code_ran")
        torch.save({"format": "AttentionUNetSegment", "format_version": 1, "payload": Marker()}, path)
        return path, "safe loading refuses"
    raise AssertionError(case)


CASES = ["missing", "empty", "truncated", "random_bytes", "bit_rot", "plain_state_dict", "foreign_dict",
         "future_version", "unknown_architecture", "missing_spec_field", "missing_and_unexpected_keys",
         "shape_mismatch", "custom_class"]


@pytest.mark.parametrize("case", CASES)
def test_broken_model_file_is_one_line_naming_the_file(case, tiny, tmp_path):
    path, fragment = _broken(case, tiny, tmp_path)
    with pytest.raises(ModelFileError) as raised:
        load_model(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: ") and fragment in message, message
    assert "\n" not in message and "Traceback" not in message and len(message) < 300 + len(str(path))
    assert not (tmp_path / "code_ran").exists(), "weights_only=True was not used: the pickle ran code"
    if case == "custom_class":  # the test file is a real threat: a full pickle load runs its code
        torch.load(path, weights_only=False)
        assert (tmp_path / "code_ran").exists()


def test_default_model_location():
    path = default_model_path()
    assert path.name == "pancreas_phantom_attention_unet.pt"
    assert path.parent.name == "Models" and path.parent.parent.name == "Resources"
    assert (path.parents[2] / "pyproject.toml").exists()  # relative to the repository root
