"""Training the click-conditioned Attention U-Net with a simulated user.

    sources (interactive_data.py) --sample_patch--> patch + one structure (class-agnostic)
      -> augmentation (spatial + intensity), domain randomisation for synthetic sources
      -> simulated user (click_simulation.py): first clicks, 0..4 rounds of the model's own
         corrections (no gradient), sometimes a damaged-truth start
      -> network (CT + include + exclude + previous mask) -> Dice + CE on the structure
      -> every `checkpoint_every` steps: MODEL_DIR/checkpoint.pt (resume) and model.pt;
         every `val_every` steps: the simulated-user protocol on whole validation CTs
         (evaluation/interactive.py through core.interactive: exactly the inference path)

One process, CPU or one GPU. The step's random draws come from generators seeded by
(seed, step), so a resumed run replays what an uninterrupted one would have done.
"""

from __future__ import annotations

import csv
import io
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..core.errors import InputError
from ..core.labels import PANCREAS
from ..core.modelspec import FORMAT_VERSION, ModelSpec
from ..core.network import build_network
from ..core.preprocessing import IntensitySpec
from ..core.prompts import PROMPT_CHANNELS, ClickEncoding
from .augmentation import AugmentationConfig, augment_batch
from .click_simulation import ClickPolicy, simulate
from .interactive_data import Sample, StructureSource, StructureVolume, load_source, sample_patch
from .loading import background_value
from .losses import DiceCELoss
from .randomisation import DomainRandomisationConfig, normalised_window, randomise_domain
from .schedule import seed_of

MODEL_FILE, CHECKPOINT_FILE, LOG_FILE = "model.pt", "checkpoint.pt", "training_log.csv"
#: What the model segments: whatever structure the clicks point at, written as label 1.
STRUCTURE = PANCREAS  # the product segments the pancreas; the model follows whatever is clicked


@dataclass
class InteractiveTrainConfig:
    """The click model's training, each default written once here (`train-clicks` shows them):
    the values the bundled model was trained with (docs/experiments/issue18-click-model-2026-12-05.md)."""

    patch_size_zyx: tuple[int, int, int] = (64, 64, 64)
    window_zyx: tuple[int, int, int] = (64, 96, 96)  # inference window recorded in the model file
    spacing_zyx: tuple[float, float, float] = (2.0, 2.0, 2.0)
    widths: tuple[int, ...] = (8, 16, 32, 64, 128)
    intensity: IntensitySpec = field(default_factory=IntensitySpec)
    encoding: ClickEncoding = field(default_factory=lambda: ClickEncoding("gaussian", 3.0))  # experiment A
    policy: ClickPolicy = field(default_factory=ClickPolicy)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    randomisation: DomainRandomisationConfig = field(default_factory=lambda: DomainRandomisationConfig(enabled=True))
    focus: dict = field(default_factory=dict)  # source name -> (label value, share of its samples)
    batch_size: int = 2
    steps: int = 5000
    lr: float = 3e-4
    grad_clip: float = 12.0
    init_from: Optional[str] = None  # a model file whose matching weights start the network
    seed: int = 0
    checkpoint_every: int = 100
    val_every: int = 500
    val_clicks: int = 5
    device: str = "cpu"

    def record(self) -> dict:
        out = asdict(self)
        out["intensity"] = self.intensity.to_dict()
        out["encoding"] = self.encoding.to_dict()
        return out


# ------------------------------------------------------------------------------ the network


def build_interactive_network(config: InteractiveTrainConfig) -> nn.Module:
    network = build_network("attention_unet3d", in_channels=len(PROMPT_CHANNELS), n_classes=2,
                            widths=tuple(config.widths))
    if config.init_from:
        _warm_start(network, config.init_from)
    return network


def _warm_start(network: nn.Module, path: str) -> None:
    """Copy every weight of the model file whose shape matches; the first convolution takes
    the file's CT filters for channel 0 and zeros for the click channels, so training starts
    from what the automatic model knows about CT and learns what the clicks add."""
    from ..files.modelfile import load_model

    source, _spec = load_model(path)
    own = network.state_dict()
    for name, value in source.state_dict().items():
        if name not in own:
            continue
        if own[name].shape == value.shape:
            own[name] = value.clone()
        elif value.dim() == 5 and own[name].shape[0] == value.shape[0] and own[name].shape[2:] == value.shape[2:] \
                and value.shape[1] == 1:
            widened = torch.zeros_like(own[name])
            widened[:, :1] = value
            own[name] = widened
    network.load_state_dict(own)


def interactive_spec(config: InteractiveTrainConfig, training: dict) -> ModelSpec:
    return ModelSpec(
        format_version=FORMAT_VERSION, architecture="attention_unet3d",
        network_args={"in_channels": len(PROMPT_CHANNELS), "n_classes": 2, "widths": tuple(config.widths)},
        labels=[STRUCTURE], spacing_zyx=tuple(config.spacing_zyx), intensity=config.intensity,
        patch_size_zyx=tuple(config.window_zyx), training=training,
        description="Click-conditioned 3D Attention U-Net (class-agnostic: segments the structure the "
                    "include clicks point at; exclude clicks and the previous mask correct it)",
        prompts=config.encoding.to_dict())


# ------------------------------------------------------------------------------ one batch


class BatchMaker:
    """Samples, augments and randomises one batch of (patch, structure) pairs."""

    def __init__(self, config: InteractiveTrainConfig, sources: Sequence[StructureSource],
                 volumes: Sequence[StructureVolume]):
        self.config = config
        self.by_source = [[v for v in volumes if v.source == s.name] for s in sources]
        shares = np.asarray([s.share if group else 0.0 for s, group in zip(sources, self.by_source)])
        if shares.sum() <= 0:
            raise InputError(None, "no training structures were found in any source")
        self.shares = shares / shares.sum()
        self.names = [s.name for s in sources]
        self.air = background_value(config.intensity)
        self.value_range = normalised_window(config.intensity)

    def _sample(self, rng: np.random.Generator) -> Sample:
        source = int(rng.choice(len(self.shares), p=self.shares))
        group = self.by_source[source]
        volume = group[rng.integers(len(group))]
        value = None
        focus = self.config.focus.get(self.names[source])
        if focus is not None and focus[0] in volume.points and rng.random() < focus[1]:
            value = int(focus[0])
        return sample_patch(volume, self.config.patch_size_zyx, rng, self.air, value)

    def batch(self, rng: np.random.Generator, generator: torch.Generator):
        """(images (B, z, y, x) float32, targets (B, z, y, x) bool) after augmentation."""
        samples = [self._sample(rng) for _ in range(self.config.batch_size)]
        image = torch.from_numpy(np.stack([s.image for s in samples]))[:, None]  # (B, 1, z, y, x)
        labels = torch.from_numpy(np.stack([s.labels for s in samples]).astype(np.int64))  # (B, z, y, x)
        image, labels = augment_batch(image, labels, self.config.augmentation, generator, self.air,
                                      self.config.spacing_zyx)
        for i, sample in enumerate(samples):
            if sample.randomise:
                image[i:i + 1] = randomise_domain(image[i:i + 1], labels[i:i + 1], self.config.randomisation,
                                                  generator, self.value_range)
        images, targets = [], []
        for i, sample in enumerate(samples):
            target = (labels[i] == sample.target_value).numpy()
            if target.sum() < 10:  # the structure left the patch in augmentation: take it as sampled
                images.append(sample.image)
                targets.append(sample.labels == sample.target_value)
            else:
                images.append(image[i, 0].numpy())
                targets.append(target)
        return images, targets


# ------------------------------------------------------------------------------ the loop


@dataclass
class TrainState:
    network: nn.Module
    optimizer: torch.optim.Optimizer
    step: int = 0
    log: list = field(default_factory=list)
    best: Optional[float] = None


def _lr(config: InteractiveTrainConfig, step: int) -> float:
    warmup = min(1.0, (step + 1) / 50.0)  # a short warm-up: the click channels start at zero
    return config.lr * warmup * (1.0 - min(step, config.steps) / config.steps) ** 0.9


def _layout(device: torch.device) -> torch.memory_format:
    # Channels-last makes oneDNN's 3D convolutions ~1.7x faster on the CPU (trainer.py measured it).
    return torch.channels_last_3d if device.type == "cpu" else torch.contiguous_format


def _predictor(network: nn.Module, device: torch.device) -> Callable[[np.ndarray], np.ndarray]:
    def predict(inputs: np.ndarray) -> np.ndarray:
        network.eval()
        with torch.no_grad():
            x = torch.from_numpy(inputs).to(device).contiguous(memory_format=_layout(device))
            logits = network(x)  # (B, 2, z, y, x)
        network.train()
        return (logits[:, 1] > logits[:, 0]).cpu().numpy()
    return predict


def protocol_validator(cases: Sequence[tuple], clicks: int, device: str = "cpu",
                       report_clicks: Sequence[int] = (1, 3, 5)) -> Callable[[nn.Module, ModelSpec], dict]:
    """validate(network, spec) -> {"dice@k": mean Dice after k clicks}: the simulated-user
    protocol on whole CTs, through the inference code path. `cases`: (CT, truth mask) images."""
    from ..core.interactive import InteractiveSession
    from ..core.options import MapOptions, WindowOptions
    from ..evaluation.interactive import simulate_user

    def validate(network: nn.Module, spec: ModelSpec) -> dict:
        per_click = np.zeros(clicks)
        for ct, truth in cases:
            session = InteractiveSession(ct, network, spec, WindowOptions(device=device), MapOptions(attention=False))
            scores = simulate_user(lambda point, include: session.add_click(point, include).labelmap, truth, clicks)
            per_click += [score.dice for score in scores]
        per_click /= max(len(cases), 1)
        network.to(memory_format=_layout(torch.device(device)))  # inference hands it back contiguous
        return {f"dice@{k}": float(per_click[k - 1]) for k in report_clicks if k <= clicks}

    return validate


def train_step(config: InteractiveTrainConfig, state: TrainState, maker: BatchMaker, loss_fn: nn.Module,
               device: torch.device) -> dict:
    rng = np.random.default_rng(seed_of(config.seed, state.step, 1))
    generator = torch.Generator().manual_seed(seed_of(config.seed, state.step, 2))
    t0 = time.perf_counter()
    images, targets = maker.batch(rng, generator)
    inputs, rounds = simulate(images, targets, _predictor(state.network, device), config.encoding,
                              config.spacing_zyx, config.policy, rng)
    t1 = time.perf_counter()
    lr = _lr(config, state.step)
    for group in state.optimizer.param_groups:
        group["lr"] = lr
    x = torch.from_numpy(inputs).to(device).contiguous(memory_format=_layout(device))  # (B, 4, z, y, x)
    y = torch.from_numpy(np.stack(targets).astype(np.int64)).to(device)  # (B, z, y, x)
    loss = loss_fn(state.network(x), y)
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(state.network.parameters(), config.grad_clip)
    state.optimizer.step()
    state.step += 1
    return {"step": state.step, "loss": float(loss.item()), "rounds": rounds, "lr": lr,
            "simulate_s": t1 - t0, "step_s": time.perf_counter() - t0}


def save_checkpoint(out: Path, state: TrainState, config: InteractiveTrainConfig, training: dict) -> None:
    from ..files.modelfile import save_model
    from ..files.writing import atomic_output

    with atomic_output(out / CHECKPOINT_FILE) as tmp:
        torch.save({"network": state.network.state_dict(), "optimizer": state.optimizer.state_dict(),
                    "step": state.step, "log": state.log, "best": state.best}, tmp)
    save_model(out / MODEL_FILE, state.network, interactive_spec(config, training))
    buffer = io.StringIO()
    columns = sorted({k for row in state.log for k in row})
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(state.log)
    with atomic_output(out / LOG_FILE) as tmp:
        tmp.write_text(buffer.getvalue(), encoding="utf-8")


def resume_state(out: Path, network: nn.Module, optimizer: torch.optim.Optimizer) -> TrainState:
    checkpoint = torch.load(out / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    network.load_state_dict(checkpoint["network"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    return TrainState(network, optimizer, int(checkpoint["step"]), list(checkpoint["log"]), checkpoint["best"])


def train_interactive(config: InteractiveTrainConfig, sources: Sequence[StructureSource], out_dir,
                      validate: Optional[Callable[[nn.Module, ModelSpec], dict]] = None, resume: bool = False,
                      report: Callable[[str], None] = print, cache_dir=None,
                      stop_after: Optional[int] = None) -> TrainState:
    """Train (or resume) into `out_dir`; `validate(network, spec) -> {name: value}` runs every
    `val_every` steps and the best mean of its "dice@" values is kept as best.pt. `stop_after`
    ends this call at that step (the schedule still runs to `config.steps` on resume)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(config.device)
    volumes = [v for s in sources for v in load_source(s, config.spacing_zyx, config.intensity, config.seed, cache_dir)]
    counts = {s.name: sum(len(v.points) for v in volumes if v.source == s.name) for s in sources}
    report(f"structures per source: {counts}")
    maker = BatchMaker(config, sources, volumes)
    network = build_interactive_network(config).to(device, memory_format=_layout(device))
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.lr, weight_decay=1e-4)
    state = resume_state(out, network, optimizer) if resume else TrainState(network, optimizer)
    training = {"config": config.record(), "synthetic": False,
                "sources": [{"name": s.name, "share": s.share, "held_out_labels": sorted(s.held_out),
                             "cases": [str(c.image_path) for c in s.cases]} for s in sources]}
    loss_fn = DiceCELoss()
    network.train()
    recent: list[dict] = []
    last = config.steps if stop_after is None else min(config.steps, stop_after)
    while state.step < last:
        row = train_step(config, state, maker, loss_fn, device)
        recent.append(row)
        if state.step % 20 == 0:
            mean = {k: float(np.mean([r[k] for r in recent])) for k in ("loss", "rounds", "simulate_s", "step_s")}
            report(f"step {state.step}/{config.steps} loss {mean['loss']:.4f} rounds {mean['rounds']:.1f} "
                   f"{mean['step_s']:.2f} s/step (simulating {mean['simulate_s']:.2f}) lr {row['lr']:.2e}")
            state.log.append({"step": state.step, **mean, "lr": row["lr"]})
            recent = []
        if validate is not None and (state.step % config.val_every == 0 or state.step == last):
            scores = validate(network, interactive_spec(config, training))
            network.train()
            state.log.append({"step": state.step, **scores})
            report(f"validation at step {state.step}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
            dice_values = [v for k, v in scores.items() if k.startswith("dice@")]
            mean_dice = float(np.mean(dice_values)) if dice_values else math.nan
            if state.best is None or mean_dice > state.best:
                state.best = mean_dice
                from ..files.modelfile import save_model
                save_model(out / "best.pt", network, interactive_spec(config, {**training, "best_step": state.step,
                                                                             "validation": scores}))
        if state.step % config.checkpoint_every == 0 or state.step == last:
            save_checkpoint(out, state, config, {**training, "steps_done": state.step})
    return state


def validation_cases(folder, label: int = 1) -> list[tuple]:
    """(CT, truth mask) images of every case of a dataset folder, the truth being `label`."""
    import SimpleITK as sitk

    from ..files.reading import read_ct
    from .data import find_cases

    cases = []
    for case in find_cases(folder):
        labels = sitk.ReadImage(str(case.label_path))
        cases.append((read_ct(case.image_path), sitk.Cast(labels == int(label), sitk.sitkUInt8)))
    return cases
