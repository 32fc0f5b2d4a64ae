"""What a set of weights means: how to build the network and how to feed it (the model file's
description, kept apart from the file format so the pipeline needs no file code)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from .labels import LabelInfo
from .preprocessing import IntensitySpec

#: Version of the model description (and of the model file that stores it).
FORMAT_VERSION = 1


@dataclass
class ModelSpec:
    """What a set of weights means: how to build the network and how to feed it."""

    format_version: int
    architecture: str  # "attention_unet3d" | "unet3d"
    network_args: dict  # keyword arguments of network.build_network
    labels: list[LabelInfo]  # background (0) excluded
    spacing_zyx: tuple[float, float, float]  # mm, the grid the network was trained on
    intensity: IntensitySpec
    patch_size_zyx: tuple[int, int, int]  # sliding-window size, multiple of the network's divisor
    training: dict = field(default_factory=dict)  # free-form summary: data, epochs, Dice, "synthetic"
    description: str = ""
    # Classes after `labels` that the network predicts only as context (trained so that it
    # tells the pancreas from the liver, duodenum, vessels...); never written: inference
    # folds them into the background window by window (inference.fold_context_logits).
    context_labels: list[LabelInfo] = field(default_factory=list)
    # Click-conditioned models only: how clicks and the previous mask are fed to the network
    # (core.prompts.ClickEncoding.to_dict: input channels, encoding, radius). Empty for a model
    # that segments on its own, which keeps working as before (cube + component for a click).
    prompts: dict = field(default_factory=dict)

    @property
    def interactive(self) -> bool:
        """True for a click-conditioned model (extra input channels for clicks and the mask)."""
        return bool(self.prompts)

    @property
    def n_network_classes(self) -> int:
        """Channels of the network's output: background, the output labels, the context."""
        return 1 + len(self.labels) + len(self.context_labels)

    def to_dict(self) -> dict[str, Any]:
        """Plain Python types only, so ``torch.load(weights_only=True)`` and JSON can hold it."""
        return {
            "format_version": int(self.format_version),
            "architecture": str(self.architecture),
            "network_args": _plain(self.network_args),
            "labels": [label.to_dict() for label in self.labels],
            "spacing_zyx": [float(v) for v in self.spacing_zyx],
            "intensity": self.intensity.to_dict(),
            "patch_size_zyx": [int(v) for v in self.patch_size_zyx],
            "training": _plain(self.training),
            "description": str(self.description),
            "context_labels": [label.to_dict() for label in self.context_labels],
            "prompts": _plain(self.prompts),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelSpec":
        """Inverse of `to_dict`; KeyError/ValueError/TypeError on malformed data."""
        spacing = tuple(float(v) for v in data["spacing_zyx"])
        patch = tuple(int(v) for v in data["patch_size_zyx"])
        if len(spacing) != 3 or len(patch) != 3:
            raise ValueError("spacing_zyx and patch_size_zyx must have 3 values")
        # JSON/pickle-free storage turns tuples into lists; the network wants tuples (hashable).
        network_args = {str(k): tuple(v) if isinstance(v, list) else v
                        for k, v in dict(data["network_args"]).items()}
        return cls(
            format_version=int(data.get("format_version", FORMAT_VERSION)),
            architecture=str(data["architecture"]),
            network_args=network_args,
            labels=[LabelInfo.from_dict(item) for item in data["labels"]],
            spacing_zyx=spacing,  # type: ignore[arg-type]
            intensity=IntensitySpec.from_dict(dict(data.get("intensity", {}))),
            patch_size_zyx=patch,  # type: ignore[arg-type]
            training=dict(data.get("training", {})),
            description=str(data.get("description", "")),
            context_labels=[LabelInfo.from_dict(item) for item in data.get("context_labels", [])],
            prompts=dict(data.get("prompts") or {}),
        )


def _plain(value: Any) -> Any:
    """Recursively convert to str/int/float/bool/None/list/dict (tuples and numpy scalars too)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if hasattr(value, "item"):  # numpy / torch scalars
        return _plain(value.item())
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"cannot store {type(value).__name__} in a model spec: {value!r}")
