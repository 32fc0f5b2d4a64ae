"""Model files: one ``.pt`` holding the network's weights and everything needed to use them.

Layout (format version 1), a dict of plain types and tensors only::

    {"format": "AttentionUNetSegment", "format_version": 1,
     "spec": ModelSpec.to_dict(),          # architecture, network args, labels, spacing, ...
     "state_dict": model.state_dict()}     # CPU tensors

Loading always uses ``torch.load(weights_only=True)``: a model file downloaded from somewhere
cannot run code (a full pickle can). Everything that can go wrong with a file the user chose
becomes a one-line ``ModelFileError(path, problem)``.
"""

from __future__ import annotations

import logging
import re
import zipfile
from pathlib import Path
from typing import Any, Union

import torch
from torch import nn

from ..core.errors import ModelFileError, PathLike
from ..core.labels import PANCREAS
from ..core.modelspec import FORMAT_VERSION, ModelSpec
from ..core.preprocessing import IntensitySpec
from .resources import default_model_path
from .writing import atomic_output

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "ModelSpec",
    "save_model",
    "load_model",
    "read_model_spec",
    "default_model_path",
    "tiny_test_model",
]

logger = logging.getLogger(__name__)


FORMAT_NAME = "AttentionUNetSegment"


def _unwrap(model: nn.Module) -> nn.Module:
    """The plain network behind DistributedDataParallel (`.module`) or torch.compile (`._orig_mod`).

    Their state dicts prefix every key ("module.", "_orig_mod."), which the plain network built
    at load time would not recognise.
    """
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel) or isinstance(model, nn.DataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def save_model(path: PathLike, model: nn.Module, spec: ModelSpec) -> None:
    """Write `model`'s weights and `spec` to one file (atomically). A folder means <folder>/model.pt."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    spec_dict = spec.to_dict()
    spec_dict["format_version"] = FORMAT_VERSION  # the file is written in this code's format
    state = {key: value.detach().cpu().clone() for key, value in _unwrap(model).state_dict().items()}
    payload = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "spec": spec_dict, "state_dict": state}
    with atomic_output(path) as temporary:
        torch.save(payload, temporary)


def _resolve_model_path(path: Path, shown: PathLike) -> Path:
    if not path.exists():
        raise ModelFileError(shown, "model file does not exist")
    if not path.is_dir():
        return path
    if (path / "model.pt").is_file():
        return path / "model.pt"
    candidates = sorted(p for p in path.glob("*.pt") if p.is_file())
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise ModelFileError(shown, "folder contains no model.pt (nor any other .pt file)")
    names = ", ".join(p.name for p in candidates[:5]) + (", ..." if len(candidates) > 5 else "")
    raise ModelFileError(shown, f"folder holds several .pt files ({names}) and no model.pt; give the file")


def _load_failure(file: Path, size: int, error: Exception) -> str:
    """One line saying why torch.load failed, from the exception and the file's first bytes."""
    text = str(error)
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if refused:
        # weights_only=True refuses to import classes/functions: a full pickle could run code.
        return (f"contains a Python object ({refused.group(1)}) that safe loading refuses; "
                "not an AttentionUNetSegment model file, or an unsafe one")
    with open(file, "rb") as stream:
        magic = stream.read(4)
    if magic.startswith(b"PK"):  # torch.save writes a zip archive
        if not zipfile.is_zipfile(file):
            return f"is truncated or corrupt (an incomplete archive of {size} bytes); copy or download it again"
        return "is corrupt (its archive is damaged)"
    return "is not a PyTorch model file (or is corrupt)"


def _check_archive_checksums(file: Path) -> None:
    """torch.load does not verify the zip CRCs, so flipped bits in the weights would load silently."""
    if not zipfile.is_zipfile(file):
        return  # legacy (non-zip) torch format: nothing to verify
    try:
        with zipfile.ZipFile(file) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, RuntimeError) as error:
        logger.debug("%s: zip check failed: %r", file, error)
        damaged = "?"
    if damaged is not None:
        raise ModelFileError(file, f"is corrupt (checksum mismatch in '{damaged}'); copy or download it again")


def _read_payload(file: Path) -> dict[str, Any]:
    """torch.load with weights_only=True, every failure summarised in one line."""
    size = file.stat().st_size
    if size == 0:
        raise ModelFileError(file, "is empty (0 bytes)")
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        logger.debug("%s: torch.load failed: %r", file, error)
        raise ModelFileError(file, _load_failure(file, size, error)) from None
    _check_archive_checksums(file)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        what = "a plain state dict or another tool's checkpoint?" if isinstance(payload, dict) else \
            f"it holds a {type(payload).__name__}"
        raise ModelFileError(file, f"is not an AttentionUNetSegment model file (no 'format' key; {what})")
    return payload


def _check_version(payload: dict[str, Any], file: Path) -> None:
    version = payload.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(file, f"has an invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(file, f"uses model format version {version}, newer than this "
                                   f"AttentionUNetSegment reads ({FORMAT_VERSION}); update AttentionUNetSegment")


def _spec_from_payload(payload: dict[str, Any], file: Path) -> ModelSpec:
    spec_data = payload.get("spec")
    if not isinstance(spec_data, dict):
        raise ModelFileError(file, "has no model description ('spec')")
    try:
        return ModelSpec.from_dict(spec_data)
    except KeyError as error:
        raise ModelFileError(file, f"model description lacks {error.args[0]!r}") from None
    except (ValueError, TypeError) as error:
        raise ModelFileError(file, f"model description is invalid: {str(error).splitlines()[0]}") from None


def read_model_spec(path: PathLike) -> ModelSpec:
    """The ModelSpec of a model file (or folder) without building the network."""
    file = _resolve_model_path(Path(path).expanduser(), path)
    payload = _read_payload(file)
    _check_version(payload, file)
    return _spec_from_payload(payload, file)


def _example(keys: list[str]) -> str:
    return f"'{keys[0]}'" + (f" and {len(keys) - 1} more" if len(keys) > 1 else "")


def load_model(path: PathLike, device: Union[str, torch.device] = "cpu") -> tuple[nn.Module, ModelSpec]:
    """Build the network a model file describes, load its weights (strictly), eval(), move to `device`.

    `path` is a ``.pt`` file or a folder holding ``model.pt`` (or exactly one ``.pt``).
    Raises ModelFileError (one line naming the file) for a missing, truncated, corrupt, foreign,
    too-new or inconsistent file.
    """
    from ..core.network import ARCHITECTURES, build_network

    file = _resolve_model_path(Path(path).expanduser(), path)
    payload = _read_payload(file)
    _check_version(payload, file)
    spec = _spec_from_payload(payload, file)
    if spec.architecture not in ARCHITECTURES:
        raise ModelFileError(file, f"uses an unknown architecture '{spec.architecture}' "
                                   f"(this version knows {', '.join(ARCHITECTURES)})")
    n_classes = spec.network_args.get("n_classes")
    if n_classes is not None and n_classes != spec.n_network_classes:
        raise ModelFileError(file, f"is inconsistent: {n_classes} network classes but {len(spec.labels)} "
                                   f"labels + {len(spec.context_labels)} context + background")
    try:
        model = build_network(spec.architecture, **spec.network_args)
    except (TypeError, ValueError) as error:
        raise ModelFileError(file, f"describes a network that cannot be built: {str(error).splitlines()[0]}") \
            from None

    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFileError(file, "has no valid weights ('state_dict')")
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or mismatched:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing ({_example(missing)})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected ({_example(unexpected)})")
        if mismatched:
            key = mismatched[0]
            problems.append(f"{len(mismatched)} of the wrong shape ('{key}': file "
                            f"{tuple(state[key].shape)}, network {tuple(expected[key].shape)})")
        raise ModelFileError(file, f"weights do not match its '{spec.architecture}' network: "
                                   + "; ".join(problems))
    model.load_state_dict(state, strict=True)
    model.eval()
    if str(device) == "auto":
        from ..core.devices import resolve_device

        device = resolve_device("auto")
    return model.to(torch.device(device)), spec


def tiny_test_model(seed: int = 0, arch: str = "attention_unet3d") -> tuple[nn.Module, ModelSpec]:
    """A randomly initialised tiny network (widths 4..64) and its spec, for tests and self-tests.

    Deterministic for a given seed, without disturbing the caller's global random state.
    """
    from ..core.network import build_network

    network_args = {"in_channels": 1, "n_classes": 2, "widths": (4, 8, 16, 32, 64)}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_network(arch, **network_args)
    model.eval()
    spec = ModelSpec(
        format_version=FORMAT_VERSION,
        architecture=arch,
        network_args=network_args,
        labels=[PANCREAS],
        spacing_zyx=(2.0, 2.0, 2.0),
        intensity=IntensitySpec(),
        patch_size_zyx=(32, 32, 32),
        training={"synthetic": True, "epochs": 0, "seed": seed, "note": "random weights, never trained"},
        description="Tiny randomly initialised test model; segments nothing meaningful.",
    )
    return model, spec
