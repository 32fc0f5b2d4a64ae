"""What a click-conditioned network sees besides the CT: include clicks, exclude clicks and the
previous mask, each as one input channel on the model grid.

    channel 0   the CT, normalised (core.preprocessing)
    channel 1   include clicks: a small ball (or Gaussian) around every "this is it" click
    channel 2   exclude clicks: the same for every "not this" click
    channel 3   the previous mask: the result before the newest click (0 before the first)

The encoding is recorded in the model file (`ModelSpec.prompts`), so training and inference
cannot disagree on it, and a model without click channels has no `prompts` at all. Clicks are
voxel indices (z, y, x) of the model grid, possibly fractional; every array is (z, y, x) or
(C, z, y, x).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Optional, Sequence

import numpy as np

#: Input channels of a click-conditioned network, in order.
PROMPT_CHANNELS = ("image", "include", "exclude", "previous")
ENCODINGS = ("ball", "gaussian")

Index = Sequence[float]  # (z, y, x) voxel index on the model grid


@dataclass(frozen=True)
class ClickEncoding:
    """How a click is drawn into its channel.

    "ball": 1 inside a ball of `radius_voxels` around the click (nnInteractive draws points as
    small balls: a strong, local signal); "gaussian": exp(-d^2 / 2 sigma^2) with
    sigma = radius_voxels / 2, cut at the radius (RITM-style soft disks). Several clicks of one
    kind are combined with max, so overlapping clicks never add up beyond 1.
    """

    kind: str = "ball"
    radius_voxels: float = 2.0

    def __post_init__(self) -> None:
        if self.kind not in ENCODINGS:
            raise ValueError(f"click encoding must be one of {ENCODINGS}, got {self.kind!r}")
        if not self.radius_voxels > 0:
            raise ValueError(f"click radius must be positive, got {self.radius_voxels}")

    def to_dict(self) -> dict[str, Any]:
        return {"channels": list(PROMPT_CHANNELS), **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ClickEncoding":
        channels = tuple(data.get("channels", PROMPT_CHANNELS))
        if channels != PROMPT_CHANNELS:
            raise ValueError(f"unknown prompt channels {channels}; this version reads {PROMPT_CHANNELS}")
        return cls(kind=str(data.get("kind", "ball")), radius_voxels=float(data.get("radius_voxels", 2.0)))


def draw_clicks(channel: np.ndarray, clicks: Sequence[Index], encoding: ClickEncoding) -> np.ndarray:
    """Draw `clicks` into `channel` (z, y, x) float32 in place (max with what is there); returns it.

    Only the small box around each click is touched, so a click costs microseconds whatever the
    volume's size. Clicks outside the array leave whatever part of their ball lies inside.
    """
    reach = int(math.ceil(encoding.radius_voxels))
    for click in clicks:
        centre = np.asarray(click, dtype=np.float64)
        low = np.maximum(np.floor(centre).astype(int) - reach, 0)
        high = np.minimum(np.ceil(centre).astype(int) + reach + 1, channel.shape)
        if np.any(high <= low):
            continue
        axes = [np.arange(lo, hi, dtype=np.float64) - c for lo, hi, c in zip(low, high, centre)]
        d2 = axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2 + axes[2][None, None, :] ** 2
        inside = d2 <= encoding.radius_voxels ** 2
        if encoding.kind == "ball":
            values = inside.astype(np.float32)
        else:
            sigma = encoding.radius_voxels / 2.0
            values = (np.exp(-d2 / (2.0 * sigma * sigma)) * inside).astype(np.float32)
        region = tuple(slice(lo, hi) for lo, hi in zip(low, high))
        np.maximum(channel[region], values, out=channel[region])
    return channel


def prompt_channels(shape_zyx: Sequence[int], include: Sequence[Index], exclude: Sequence[Index],
                    previous: Optional[np.ndarray], encoding: ClickEncoding) -> np.ndarray:
    """(3, z, y, x) float32: include clicks, exclude clicks, previous mask (0/1; zeros if None)."""
    shape = tuple(int(n) for n in shape_zyx)
    channels = np.zeros((3,) + shape, dtype=np.float32)
    draw_clicks(channels[0], include, encoding)
    draw_clicks(channels[1], exclude, encoding)
    if previous is not None:
        if previous.shape != shape:
            raise ValueError(f"previous mask {previous.shape} does not match the volume {shape}")
        channels[2] = previous != 0
    return channels


def network_input(image_zyx: np.ndarray, include: Sequence[Index], exclude: Sequence[Index],
                  previous: Optional[np.ndarray], encoding: ClickEncoding) -> np.ndarray:
    """(4, z, y, x) float32 in PROMPT_CHANNELS order: the CT and its three prompt channels."""
    prompts = prompt_channels(image_zyx.shape, include, exclude, previous, encoding)
    return np.concatenate([np.asarray(image_zyx, dtype=np.float32)[None], prompts], axis=0)
