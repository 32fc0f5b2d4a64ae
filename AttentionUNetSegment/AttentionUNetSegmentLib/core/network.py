"""3D Attention U-Net (Oktay et al. 2018, arXiv:1804.03999) and its plain U-Net baseline.

The layout follows the official `unet_CT_single_att_dsv_3D` of ozan-oktay/Attention-Gated-Networks
layer for layer, so the parameter count is the same (in 1, classes 4: 6,214,151; the plain dsv
U-Net: 5,888,004), but it is written for modern PyTorch and returns the attention coefficients
from `forward` instead of needing forward hooks.

    level 1  conv1 ──────────────────────────────(not gated)──────────── up1 ─ dsv1 ─┐
    level 2   conv2 ───── gate2(g = up3) ──────────────────────────── up2 ─ dsv2 ──┤
    level 3    conv3 ──── gate3(g = up4) ───────────────────────── up3 ─ dsv3 ───┤ fuse -> logits
    level 4     conv4 ─── gate4(g = gating(center)) ───────────── up4 ─ dsv4 ────┘
    level 5      center (bottleneck, 1/16 resolution)

Every tensor is (B, C, z, y, x). Level L (1-based) runs at 1/2**(L-1) of the input resolution,
so the input must be a multiple of 2**(levels-1) = 16 along every axis.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

ARCHITECTURES = ("attention_unet3d", "unet3d")


def _resize(x: torch.Tensor, size: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """Trilinear resize; a no-op when the size already matches (the common case for gates).

    align_corners=False everywhere: voxel i of a map at scale s is centred on fine index
    s*i + (s-1)/2, which is what geometry.coarse_grid assumes for the attention overlays.
    """
    if tuple(x.shape[2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="trilinear", align_corners=False)


class ConvBlock(nn.Module):
    """Two 3x3x3 conv-BN-ReLU (the official `UnetConv3` with kernel 3 and padding 1)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv3d(in_channels, out_channels, 3, padding=1),
            nn.BatchNorm3d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv3d(out_channels, out_channels, 3, padding=1),
            nn.BatchNorm3d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class UpBlock(nn.Module):
    """Decoder level (official `UnetUp3_CT`): x2 trilinear upsample, concat with the skip, ConvBlock."""

    def __init__(self, skip_channels: int, coarse_channels: int):
        super().__init__()
        self.conv = ConvBlock(skip_channels + coarse_channels, skip_channels)

    def forward(self, skip: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        # skip: (B, Cs, z, y, x), coarse: (B, Cc, z/2, y/2, x/2)
        up = _resize(coarse, skip.shape[2:])  # (B, Cc, z, y, x)
        return self.conv(torch.cat([skip, up], dim=1))  # (B, Cs, z, y, x)


class GridAttentionGate3D(nn.Module):
    """Additive grid attention gate on one skip connection (paper eq. 1-2, official
    `GridAttentionBlock3D` in 'concatenation' mode wrapped by `MultiAttentionBlock`).

        alpha = sigmoid(psi(ReLU(theta(x) + phi(g))))   on a grid at half the skip resolution
        y     = combine(W(alpha_up * x))

    theta has kernel = stride = 2, so each coefficient sees a 2x2x2 block of the skip and is
    computed where the gating signal g (one level coarser) lives; alpha is then trilinearly
    upsampled to the skip resolution. `W` (1x1x1 conv + BN) is the official output transform and
    `combine` (1x1x1 conv-BN-ReLU) is the official MultiAttentionBlock's `combine_gates`; both
    are kept so the network matches the official parameter count exactly.
    """

    def __init__(self, in_channels: int, gating_channels: int, inter_channels: int | None = None):
        super().__init__()
        inter_channels = in_channels if inter_channels is None else inter_channels
        self.theta = nn.Conv3d(in_channels, inter_channels, kernel_size=2, stride=2, bias=False)
        self.phi = nn.Conv3d(gating_channels, inter_channels, kernel_size=1)
        self.psi = nn.Conv3d(inter_channels, 1, kernel_size=1)
        self.W = nn.Sequential(nn.Conv3d(in_channels, in_channels, 1), nn.BatchNorm3d(in_channels))
        self.combine = nn.Sequential(
            nn.Conv3d(in_channels, in_channels, 1), nn.BatchNorm3d(in_channels), nn.ReLU(inplace=True)
        )

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # x: skip (B, C, z, y, x); g: gating signal (B, Cg, z/2, y/2, x/2)
        theta_x = self.theta(x)  # (B, I, z/2, y/2, x/2)
        phi_g = _resize(self.phi(g), theta_x.shape[2:])  # (B, I, z/2, y/2, x/2)
        f = F.relu(theta_x + phi_g)  # additive attention: (B, I, z/2, y/2, x/2)
        alpha = torch.sigmoid(self.psi(f))  # (B, 1, z/2, y/2, x/2), in [0, 1]
        alpha = _resize(alpha, x.shape[2:])  # (B, 1, z, y, x)
        y = self.combine(self.W(alpha * x))  # (B, C, z, y, x)
        return y, alpha


class AttentionUNet3D(nn.Module):
    """3D U-Net with grid attention gates on skip levels `gated_levels` and fused deep supervision.

    forward(x) returns the logits (B, n_classes, z, y, x). With deep supervision these are the
    *fused* output: every decoder level gets a 1x1x1 conv to n_classes, the coarse ones are
    upsampled to full resolution, all are concatenated and fused by a 1x1x1 conv. That fused map
    is what the official model returns and trains on, so training needs no extra outputs.
    forward(x, return_attention=True) returns (logits, {"gate2": (B, 1, z/2, y/2, x/2),
    "gate3": (B, 1, z/4, ...), "gate4": (B, 1, z/8, ...)}): each gate's coefficients at the
    resolution of the skip connection it gates (scale `gate_scales[name]`).
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 2,
        widths: tuple[int, ...] | list[int] = (16, 32, 64, 128, 256),
        gated_levels: tuple[int, ...] | list[int] = (2, 3, 4),
        deep_supervision: bool = True,
    ):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        gated_levels = tuple(sorted(int(level) for level in gated_levels))
        n_levels = len(widths)
        if n_levels < 2 or min(widths) < 1:
            raise ValueError(f"widths must list at least 2 positive channel counts, got {widths}")
        if in_channels < 1 or n_classes < 1:
            raise ValueError(f"in_channels and n_classes must be >= 1, got {in_channels}, {n_classes}")
        # Level 1 (full resolution) is never gated: the paper found it adds cost, not accuracy.
        # The bottleneck (level n_levels) has no skip connection to gate.
        allowed = tuple(range(2, n_levels))
        if len(set(gated_levels)) != len(gated_levels) or not set(gated_levels) <= set(allowed):
            raise ValueError(f"gated_levels must be distinct levels among {allowed}, got {gated_levels}")

        self.in_channels = in_channels
        self.n_classes = n_classes
        self.widths = widths
        self.gated_levels = gated_levels
        self.deep_supervision = deep_supervision
        self.n_levels = n_levels
        self.divisor = 2 ** (n_levels - 1)
        self.gate_names: tuple[str, ...] = tuple(f"gate{level}" for level in gated_levels)
        # A gate's map lives on its skip's grid: level L is downsampled 2**(L-1) times.
        self.gate_scales: dict[str, int] = {f"gate{level}": 2 ** (level - 1) for level in gated_levels}

        # Encoder: levels 1..n_levels; the last one is the bottleneck ("center").
        self.encoder = nn.ModuleList(
            [ConvBlock(in_channels if i == 0 else widths[i - 1], widths[i]) for i in range(n_levels)]
        )
        # The deepest skip is gated by a 1x1x1 conv-BN-ReLU of the bottleneck (official "gating");
        # only built when that level is gated, so no parameter goes unused (DDP complains).
        deepest_skip = n_levels - 1
        self.gating = None
        if deepest_skip in gated_levels:
            self.gating = nn.Sequential(
                nn.Conv3d(widths[-1], widths[-1], 1), nn.BatchNorm3d(widths[-1]), nn.ReLU(inplace=True)
            )
        # Gate on level L: skip widths[L-1]; its gating signal has widths[L] channels (the
        # bottleneck/gating block for the deepest skip, the decoder output of level L+1 otherwise).
        self.gates = nn.ModuleDict(
            {
                f"gate{level}": GridAttentionGate3D(widths[level - 1], widths[level], widths[level - 1])
                for level in gated_levels
            }
        )
        # Decoder: decoder[i] produces level i+1 from skip i+1 and the level below.
        self.decoder = nn.ModuleList([UpBlock(widths[i], widths[i + 1]) for i in range(n_levels - 1)])
        if deep_supervision:
            # One head per decoder level (official dsv1..dsv4), fused by a 1x1x1 conv.
            self.dsv = nn.ModuleList([nn.Conv3d(widths[i], n_classes, 1) for i in range(n_levels - 1)])
            self.fuse = nn.Conv3d(n_classes * (n_levels - 1), n_classes, 1)
        else:
            self.head = nn.Conv3d(widths[0], n_classes, 1)

        self._init_weights()

    def _init_weights(self) -> None:
        # The official init: Kaiming-normal (fan_in, ReLU gain) conv weights, conv biases at
        # PyTorch's default, BN weight ~ N(1, 0.02) and bias 0.
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless x is (B, in_channels, z, y, x) with sizes divisible by `divisor`."""
        if x.dim() != 5:
            raise ValueError(f"expected a (B, C, z, y, x) tensor, got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channel(s), got {x.shape[1]}")
        spatial = tuple(x.shape[2:])
        if any(s == 0 or s % self.divisor for s in spatial):
            raise ValueError(
                f"input size (z, y, x) = {spatial} must be a non-zero multiple of {self.divisor} "
                f"along every axis ({self.n_levels - 1} poolings by 2); pad the input first"
            )

    def forward(
        self, x: torch.Tensor, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        self.check_input(x)  # x: (B, C_in, z, y, x)
        n = self.n_levels

        skips = []
        h = x
        for level in range(1, n):
            h = self.encoder[level - 1](h)  # (B, w[L-1], z/2**(L-1), ...)
            skips.append(h)
            h = F.max_pool3d(h, 2)
        center = self.encoder[-1](h)  # bottleneck: (B, w[-1], z/16, y/16, x/16)

        attention: dict[str, torch.Tensor] = {}
        decoded: list[torch.Tensor | None] = [None] * (n - 1)  # decoded[L-1]: decoder output of level L
        h = center
        for level in range(n - 1, 0, -1):  # deepest skip first
            skip = skips[level - 1]  # (B, w[L-1], z/2**(L-1), ...)
            name = f"gate{level}"
            if name in self.gates:
                g = self.gating(center) if level == n - 1 else h  # one level coarser than the skip
                skip, attention[name] = self.gates[name](skip, g)
            h = self.decoder[level - 1](skip, h)  # (B, w[L-1], z/2**(L-1), ...)
            decoded[level - 1] = h

        if self.deep_supervision:
            # Official concat order: full-res head first, then levels 2..n-1 upsampled to full res.
            full = x.shape[2:]
            heads = [_resize(self.dsv[i](decoded[i]), full) for i in range(n - 1)]  # (B, K, z, y, x) each
            logits = self.fuse(torch.cat(heads, dim=1))  # (B, K, z, y, x)
        else:
            logits = self.head(decoded[0])  # (B, K, z, y, x)

        if return_attention:
            return logits, {name: attention[name] for name in self.gate_names}
        return logits


class UNet3D(AttentionUNet3D):
    """The same backbone without attention gates: skips go straight to the concatenation."""

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 2,
        widths: tuple[int, ...] | list[int] = (16, 32, 64, 128, 256),
        deep_supervision: bool = True,
        gated_levels: tuple[int, ...] | list[int] = (),
    ):
        # gated_levels is accepted (empty only) so a network_args dict can be passed unchanged.
        if tuple(gated_levels):
            raise ValueError(f"UNet3D has no attention gates, got gated_levels={tuple(gated_levels)}")
        super().__init__(in_channels, n_classes, widths, gated_levels=(), deep_supervision=deep_supervision)


def build_network(arch: str, **network_args) -> nn.Module:
    """Build "attention_unet3d" or "unet3d" with the keyword arguments of its constructor."""
    if arch == "attention_unet3d":
        return AttentionUNet3D(**network_args)
    if arch == "unet3d":
        return UNet3D(**network_args)
    raise ValueError(f"unknown architecture {arch!r}; expected one of {ARCHITECTURES}")


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
