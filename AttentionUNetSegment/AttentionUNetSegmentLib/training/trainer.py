"""`attention-unet-segment train`: train a 3D (Attention) U-Net on CT/label pairs.

    DATASET_DIR -> find_cases -> load_case (preprocessing.preprocess: the inference code path)
      -> PatchDataset (foreground oversampling, one random stream per rank)
      -> augment_batch on the device -> network -> Dice + CE -> Adam/SGD (AMP on CUDA)
      -> each epoch: sliding-window validation Dice, MODEL_DIR/model.pt (best), last.pt,
         checkpoint_last.pt (resume state), training_log.csv, learning_curve.png

Multi-GPU / multi-node: run the same command under `torchrun --nproc-per-node N`; the
environment variables torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK) switch on
DistributedDataParallel. Every rank trains on its own patch stream, validation cases are shared
out between ranks, and only rank 0 writes files or prints. MODEL_DIR must be on a filesystem
every node can read (for --resume and --cache).

Crash safety: every file is written to a temporary name and renamed (os.replace is atomic), and
the resume state is written at the end of every epoch, so a kill -9 loses at most the epoch in
progress. Each epoch's patches and augmentations come from generators seeded by
(seed, rank, epoch, index), so a resumed run replays exactly what an uninterrupted one does.
"""

from __future__ import annotations

import csv
import io
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import date
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

from .. import __version__
from ..core.errors import InputError
from .data import (
    AugmentationConfig,
    Case,
    LoadedCase,
    PatchDataset,
    PatchSampler,
    augment_batch,
    background_value,
    check_merge_is_safe,
    find_cases,
    is_synthetic_dataset,
    load_case,
    num_classes,
    parse_label_map,
    read_dataset_json,
)
from .losses import DiceCELoss

#: `train --arch` names -> core.network architectures.
ARCH_CHOICES = {"attention": "attention_unet3d", "unet": "unet3d"}
MODEL_FILE, LAST_FILE, CHECKPOINT_FILE = "model.pt", "last.pt", "checkpoint_last.pt"
LOG_FILE, CURVE_FILE = "training_log.csv", "learning_curve.png"
CHECKPOINT_FORMAT = "AttentionUNetSegment-train-checkpoint"
LOG_COLUMNS = ("epoch", "train_loss", "val_dice", "lr", "seconds", "patches_per_s")
# Changing these between a run and its --resume would train a different model.
_FIXED_ON_RESUME = ("arch", "widths", "patch_size_zyx", "spacing_zyx", "labels", "optimizer",
                    "batch_size", "seed")

ProgressCallback = Callable[[float, str], None]


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in the checkpoint for --resume)."""

    arch: str = "attention"                 # attention | unet
    epochs: int = 300
    iterations_per_epoch: int = 250         # batches per epoch and rank
    patch_size_zyx: tuple[int, int, int] = (96, 160, 160)   # the paper's 160x160x96 (x, y, z)
    spacing_zyx: tuple[float, float, float] = (2.0, 2.0, 2.0)  # the paper: isotropic 2 mm
    batch_size: int = 2                     # per rank; the paper used 2-4
    optimizer: str = "adam"                 # adam | sgd
    lr: float | None = None                 # None: 1e-4 (adam, the paper) or 1e-2 (sgd)
    lr_schedule: str = "auto"               # auto (sgd: poly, adam: constant) | poly | constant
    weight_decay: float | None = None       # None: 0 (adam) or 3e-5 (sgd, nnU-Net)
    grad_clip: float = 12.0                 # max gradient norm (nnU-Net); 0 disables
    dice_weight: float = 1.0
    ce_weight: float = 1.0
    labels: str = "merge"                   # merge | "1:1,2:1" (source value:class)
    foreground_probability: float = 0.33
    val_fraction: float = 0.2
    val_cases: tuple[str, ...] = ()         # explicit validation case ids (overrides fraction)
    val_every: int = 1
    val_overlap: float = 0.5
    seed: int = 0
    num_workers: int = 2
    amp: bool | None = None                 # None: on for CUDA
    widths: tuple[int, ...] = (16, 32, 64, 128, 256)
    device: str = "auto"                    # auto | cpu | cuda | mps
    cache: bool = False                     # preprocessed arrays as .npy under MODEL_DIR/cache
    sync_batchnorm: bool = False            # multi-GPU: BatchNorm statistics over all ranks
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)

    @property
    def base_lr(self) -> float:
        return self.lr if self.lr is not None else (1e-4 if self.optimizer == "adam" else 1e-2)

    @property
    def schedule(self) -> str:
        if self.lr_schedule != "auto":
            return self.lr_schedule
        return "poly" if self.optimizer == "sgd" else "constant"

    def to_dict(self) -> dict:
        """Plain types only (safe for torch.load(weights_only=True))."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["augmentation"] = AugmentationConfig(**values.get("augmentation", {}))
        return cls(**values)

    def validate(self) -> None:
        def bad(problem: str) -> InputError:
            return InputError(None, problem)
        if self.arch not in ARCH_CHOICES:
            raise bad(f"--arch must be one of {', '.join(ARCH_CHOICES)}, got {self.arch!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise bad(f"--optimizer must be adam or sgd, got {self.optimizer!r}")
        if self.lr_schedule not in ("auto", "poly", "constant"):
            raise bad(f"unknown lr schedule {self.lr_schedule!r}")
        divisor = 2 ** (len(self.widths) - 1)
        if len(self.patch_size_zyx) != 3 or any(p < divisor or p % divisor
                                                 for p in self.patch_size_zyx):
            x, y, z = self.patch_size_zyx[::-1]
            raise bad(f"--patch {x},{y},{z}: every size must be a multiple of {divisor}")
        if min(self.epochs, self.iterations_per_epoch, self.batch_size, self.val_every) < 1:
            raise bad("epochs, iterations per epoch, batch size and val-every must be >= 1")
        if not 0.0 <= self.val_fraction < 1.0:
            raise bad(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if any(s <= 0 for s in self.spacing_zyx) or len(self.spacing_zyx) != 3:
            raise bad(f"--spacing must be positive, got {self.spacing_zyx}")
        parse_label_map(self.labels)


@dataclass
class TrainResult:
    model: nn.Module                       # the trained network (last epoch), unwrapped
    history: list[dict]                    # one row per epoch (LOG_COLUMNS)
    best_val_dice: float | None
    best_epoch: int | None
    model_path: Path


# ---------------------------------------------------------------------------------------------
# Distributed (torchrun) helpers


@dataclass
class _Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            if self.device.type == "cuda":
                dist.barrier(device_ids=[self.device.index])
            else:
                dist.barrier()

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum over ranks (float64 so Dice sums are not rounded)."""
        if not self.enabled:
            return [float(v) for v in values]
        tensor = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def broadcast_buffers(self, model: nn.Module) -> None:
        """DDP keeps the parameters identical, but BatchNorm running statistics follow each
        rank's own last batch. Rank 0's are the ones saved, so every rank takes those (and
        validates the very model that is written)."""
        if self.enabled:
            for buffer in model.buffers():
                dist.broadcast(buffer, src=0)

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def _start_distributed(device_name: str) -> _Distributed:
    """Read torchrun's environment, pick this rank's device, join the process group."""
    from ..core.devices import resolve_device

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    name = (device_name or "auto").lower()
    if name == "auto":
        # Not MPS: 3D grid_sample (augmentation) is not reliably supported there.
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = resolve_device(name)
    if device.type == "cuda":
        # One GPU per process: LOCAL_RANK picks it (torchrun's convention).
        index = local_rank if world > 1 else (device.index or 0)
        device = torch.device("cuda", index)
        torch.cuda.set_device(device)
    info = _Distributed(rank, world, local_rank, device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        info.owns_group = True
    return info


# ---------------------------------------------------------------------------------------------
# Small helpers


def split_cases(cases: list[Case], val_fraction: float, val_ids: Sequence[str],
                seed: int) -> tuple[list[Case], list[Case]]:
    """(train, validation): explicit ids, else a seeded random `val_fraction` (at least one
    validation case when the fraction is > 0 and there are two cases or more)."""
    by_id = {case.id: case for case in cases}
    if val_ids:
        unknown = [cid for cid in val_ids if cid not in by_id]
        if unknown:
            raise InputError(None, f"validation case(s) not in the dataset: {', '.join(unknown)}")
        val = [by_id[cid] for cid in val_ids]
    else:
        n_val = 0
        if val_fraction > 0 and len(cases) >= 2:
            n_val = min(len(cases) - 1, max(1, round(val_fraction * len(cases))))
        order = np.random.default_rng(seed).permutation(len(cases))
        val = sorted((cases[i] for i in order[:n_val]), key=lambda case: case.id)
    val_set = {case.id for case in val}
    train_cases = [case for case in cases if case.id not in val_set]
    if not train_cases:
        raise InputError(None, "no training cases left after the validation split")
    return train_cases, val


def _lr_at(config: TrainConfig, step: int, total_steps: int) -> float:
    if config.schedule == "poly":    # nnU-Net's polynomial decay to 0
        return config.base_lr * (1.0 - min(step, total_steps) / total_steps) ** 0.9
    return config.base_lr


def _lr_phases_from_log(history: list[dict]) -> list[dict]:
    """Learning-rate phases rebuilt from the per-epoch log of a checkpoint that predates
    `lr_phases`: a new phase wherever the logged rate changes (right for constant schedules,
    which is all such checkpoints used)."""
    phases: list[dict] = []
    for row in history:
        if not phases or phases[-1]["lr"] != row["lr"]:
            phases.append({"first_epoch": int(row["epoch"]), "schedule": "constant", "lr": row["lr"]})
    return phases


def _lr_schedule_summary(phases: list[dict], epochs_done: int) -> list[dict]:
    """[{"epochs": "1-48", "schedule": "constant", "lr": 5e-4}, ...]: what the model was
    trained with, phase by phase (a run resumed with another --lr has several)."""
    summary = []
    for i, phase in enumerate(phases):
        first = phase["first_epoch"]
        last = phases[i + 1]["first_epoch"] - 1 if i + 1 < len(phases) else epochs_done
        last = min(last, epochs_done)
        if last >= first:
            summary.append({"epochs": f"{first}-{last}", "schedule": phase["schedule"],
                            "lr": phase["lr"]})
    return summary


def _make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        decay = 3e-5 if config.weight_decay is None else config.weight_decay
        return torch.optim.SGD(model.parameters(), lr=config.base_lr, momentum=0.99,
                               nesterov=True, weight_decay=decay)
    decay = 0.0 if config.weight_decay is None else config.weight_decay
    return torch.optim.Adam(model.parameters(), lr=config.base_lr, weight_decay=decay)


def _seed_of(*keys: int) -> int:
    """A 63-bit seed from several integers (numpy's SeedSequence mixes them well)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint64)[0]
               >> np.uint64(1))


def _mean_dice(pred: np.ndarray, truth: np.ndarray, n_classes: int) -> float:
    from ..evaluation.metrics import dice
    return float(np.mean([dice(pred == c, truth == c) for c in range(1, n_classes)]))


def _label_infos(label_map: dict[int, int] | None, dataset_dir: Path) -> list:
    """LabelInfo per class: 1 is the pancreas; extra classes are named from dataset.json."""
    from ..core.labels import PANCREAS, LabelInfo

    n = num_classes(label_map)
    names = read_dataset_json(dataset_dir).get("labels", {})
    infos = [PANCREAS]
    palette = [(0.78, 0.27, 0.27), (0.35, 0.6, 0.9), (0.5, 0.8, 0.4)]
    for cls in range(2, n):
        sources = [src for src, dst in (label_map or {}).items() if dst == cls]
        name = str(names.get(str(sources[0]), f"label {sources[0]}")) if sources else f"class {cls}"
        infos.append(LabelInfo(cls, name.capitalize(), palette[(cls - 2) % len(palette)]))
    return infos


def _atomic_torch_save(obj, path: Path) -> None:
    from ..files.writing import atomic_output
    with atomic_output(path) as tmp:
        torch.save(obj, tmp)


def _write_log(path: Path, history: list[dict]) -> None:
    """The whole CSV, rewritten from the history each epoch (so it always matches the
    checkpoint, even after a kill between the two writes)."""
    from ..files.writing import atomic_output
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LOG_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: "" if row.get(k) is None else
                         (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k])
                         for k in LOG_COLUMNS})
    with atomic_output(path) as tmp:
        tmp.write_text(buffer.getvalue())


def _write_curve(path: Path, history: list[dict], title: str = "") -> str | None:
    """learning_curve.png; a failure here must never stop a training run. -> error or None."""
    try:
        from ..reports.figures import learning_curve_png
        epochs = [row["epoch"] for row in history]
        series = {"train loss": [row["train_loss"] for row in history],
                  "validation Dice": [math.nan if row["val_dice"] is None else row["val_dice"]
                                      for row in history]}
        learning_curve_png(path, epochs, series, title=title)
        return None
    except Exception as error:  # noqa: BLE001 - a figure is optional, the weights are not
        return f"{type(error).__name__}: {error}"


def read_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """The resume state written by `train` (plain types: loads with weights_only=True)."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no checkpoint to resume from (train without --resume first)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the same user problem
        raise InputError(path, f"unreadable checkpoint ({type(error).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise InputError(path, "not a training checkpoint of this program")
    return state


class _Reporter:
    """Rank 0's output: a per-epoch bar on a terminal (loss, patches/s), epoch lines, or a
    caller's (fraction, message) callback, throttled so reporting never slows training."""

    def __init__(self, progress: ProgressCallback | bool | None, enabled: bool):
        self.callback = progress if callable(progress) else None
        self.terminal = progress is True and enabled
        self.enabled = enabled and progress not in (None, False)
        self.bar = None
        self.last = 0.0

    def start_bar(self) -> None:
        if self.terminal and sys.stderr.isatty():
            from ..core.progress import TerminalProgress
            self.bar = TerminalProgress(sys.stderr)

    def step(self, fraction_epoch: float, fraction_total: float, message: str) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if fraction_epoch < 1.0 and now - self.last < 0.2:
            return
        self.last = now
        if self.bar is not None:
            self.bar(fraction_epoch, message)
        if self.callback is not None:
            self.callback(fraction_total, message)

    def line(self, message: str, fraction_total: float | None = None) -> None:
        if not self.enabled:
            return
        if self.terminal:
            print(message, file=sys.stderr, flush=True)
        if self.callback is not None and fraction_total is not None:
            self.callback(fraction_total, message)


# ---------------------------------------------------------------------------------------------
# Training


def train(config: TrainConfig, dataset_dir: str | os.PathLike, out_dir: str | os.PathLike,
          resume: bool = False, progress: ProgressCallback | bool | None = True,
          overwrite: bool = False) -> TrainResult:
    """Train and write MODEL_DIR (see the module docstring). Works alone or under torchrun.

    progress: True = bar and epoch lines on stderr, a callable gets (fraction, message),
    None/False = silent. Only rank 0 reports.
    """
    config.validate()
    ctx = _start_distributed(config.device)
    try:
        return _train(config, Path(dataset_dir), Path(out_dir), resume, overwrite, ctx,
                      _Reporter(progress, ctx.is_main))
    finally:
        ctx.close()


def _prepare_output(out: Path, resume: bool, overwrite: bool, ctx: _Distributed) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder")
    if resume:
        if not (out / CHECKPOINT_FILE).exists():
            raise InputError(out / CHECKPOINT_FILE, "no checkpoint to resume from")
        if ctx.is_main:
            # A kill -9 in the middle of a write leaves imageio.atomic_output's private
            # temporary folder behind (the target itself is intact): tidy up.
            for name in (MODEL_FILE, LAST_FILE, CHECKPOINT_FILE, LOG_FILE, CURVE_FILE):
                for stale in out.glob(f".{name}.tmp-*"):
                    shutil.rmtree(stale, ignore_errors=True)
        return
    if (out / MODEL_FILE).exists() and not overwrite:
        raise InputError(out / MODEL_FILE, "exists; use --resume to continue that training "
                                           "or --overwrite to start again")
    ctx.barrier()   # every rank has looked before rank 0 removes anything
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        # A fresh start must never be resumed from an older run's state.
        for name in (CHECKPOINT_FILE, LAST_FILE):
            (out / name).unlink(missing_ok=True)


def _load_cases(cases: list[Case], config: TrainConfig, intensity, label_map,
                cache_dir: Path | None, ctx: _Distributed, reporter: _Reporter,
                what: str) -> list[LoadedCase]:
    if cache_dir is not None and ctx.enabled:
        # Preprocess a share each into the cache, then every rank memory-maps them all.
        for case in cases[ctx.rank::ctx.world_size]:
            load_case(case, config.spacing_zyx, intensity, label_map, cache_dir)
        ctx.barrier()
    if cases:
        reporter.line(f"preprocessing {len(cases)} {what} case(s)")
        reporter.start_bar()
    loaded = []
    for i, case in enumerate(cases):
        reporter.step(i / len(cases), 0.0, f"{what} case {i + 1}/{len(cases)}: {case.id}")
        loaded.append(load_case(case, config.spacing_zyx, intensity, label_map, cache_dir))
    if cases:
        reporter.step(1.0, 0.0, f"{len(cases)} {what} case(s) ready")
    return loaded


def _validate(model: nn.Module, cases: list[LoadedCase], config: TrainConfig,
              n_classes: int, use_amp: bool, ctx: _Distributed) -> float:
    """Mean Dice over the validation cases, on the model grid, shared out between ranks."""
    from ..core.inference import InferenceOptions, sliding_window_predict

    options = InferenceOptions(patch_size_zyx=tuple(config.patch_size_zyx),
                               overlap=config.val_overlap, batch_size=config.batch_size,
                               device=str(ctx.device), precision="auto" if use_amp else "fp32",
                               return_attention=False)
    total = 0.0
    for case in cases[ctx.rank::ctx.world_size]:
        logits = sliding_window_predict(model, case.image, options).logits   # (K, z, y, x)
        total += _mean_dice(logits.argmax(0), case.label, n_classes)
    return ctx.sum([total])[0] / len(cases)


def _train(config: TrainConfig, dataset_dir: Path, out: Path, resume: bool, overwrite: bool,
           ctx: _Distributed, reporter: _Reporter) -> TrainResult:
    from ..core.modelspec import FORMAT_VERSION, ModelSpec
    from ..core.network import build_network
    from ..core.preprocessing import IntensitySpec
    from ..files.modelfile import save_model

    _prepare_output(out, resume, overwrite, ctx)
    state = read_checkpoint(out / CHECKPOINT_FILE, ctx.device) if resume else None
    if state is not None:
        stored = TrainConfig.from_dict(state["config"])
        changed = [name for name in _FIXED_ON_RESUME
                   if getattr(stored, name) != getattr(config, name)]
        if changed:
            raise InputError(out / CHECKPOINT_FILE, f"--resume with different {', '.join(changed)} "
                                                    "than the interrupted run")

    label_map = parse_label_map(config.labels)
    if label_map is None:
        check_merge_is_safe(dataset_dir)
    n_classes = num_classes(label_map)
    intensity = IntensitySpec()
    cases = find_cases(dataset_dir)
    if state is not None:    # the split of the interrupted run, not a new one
        by_id = {case.id: case for case in cases}
        missing = [cid for cid in state["train_ids"] + state["val_ids"] if cid not in by_id]
        if missing:
            raise InputError(dataset_dir, f"case(s) of the interrupted run are missing: "
                                          f"{', '.join(missing[:3])}")
        train_cases = [by_id[cid] for cid in state["train_ids"]]
        val_cases = [by_id[cid] for cid in state["val_ids"]]
    else:
        train_cases, val_cases = split_cases(cases, config.val_fraction, config.val_cases,
                                             config.seed)
    cache_dir = out / "cache" if config.cache else None
    train_data = _load_cases(train_cases, config, intensity, label_map, cache_dir, ctx,
                             reporter, "training")
    val_data = _load_cases(val_cases, config, intensity, label_map, cache_dir, ctx,
                           reporter, "validation")
    for case in val_data:      # inference wants writable in-memory arrays, not memory maps
        case.image = np.array(case.image)
        case.label = np.array(case.label)

    # ---- model, optimiser, state
    device = ctx.device
    use_amp = device.type == "cuda" if config.amp is None else bool(config.amp and
                                                                      device.type == "cuda")
    arch = ARCH_CHOICES[config.arch]
    network_args = {"in_channels": 1, "n_classes": n_classes, "widths": list(config.widths)}
    torch.manual_seed(config.seed)        # same initial weights on every rank
    model = build_network(arch, **network_args).to(device)
    if ctx.enabled and config.sync_batchnorm and device.type == "cuda":
        # Same state-dict keys as BatchNorm3d, so model.pt loads into the plain network.
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = _make_optimizer(model, config)
    # bf16 where the GPU has it (Ampere+): fp32's exponent range, so no loss scaling needed;
    # fp16 with a GradScaler on older GPUs.
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp and amp_dtype == torch.float16)
    start_epoch, history = 0, []
    best_dice, best_epoch = None, None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if state["scaler"] and scaler.is_enabled():   # empty when saved by a disabled one
            scaler.load_state_dict(state["scaler"])
        start_epoch, history = int(state["epoch"]), list(state["history"])
        best_dice, best_epoch = state["best_val_dice"], state["best_epoch"]
        torch.set_rng_state(state["torch_rng"].cpu())
    # Each start or resume with a different rate or schedule opens a phase, so the model file
    # records the whole schedule (e.g. 5e-4 for epochs 1-48, then 1e-4), not just the last --lr.
    lr_phases = [] if state is None else list(state.get("lr_phases") or _lr_phases_from_log(history))
    if not lr_phases or (lr_phases[-1]["schedule"], lr_phases[-1]["lr"]) != (config.schedule,
                                                                            config.base_lr):
        lr_phases.append({"first_epoch": start_epoch + 1, "schedule": config.schedule,
                          "lr": config.base_lr})
    raw_model = model
    if ctx.enabled:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    loss_fn = DiceCELoss(config.dice_weight, config.ce_weight)
    pad = background_value(intensity)
    sampler = PatchSampler(config.patch_size_zyx, config.foreground_probability, pad)
    dataset = PatchDataset(train_data, sampler, config.iterations_per_epoch * config.batch_size,
                           config.batch_size, config.seed, ctx.rank)
    augment_rng = torch.Generator(device=device)
    total_steps = config.epochs * config.iterations_per_epoch

    dataset_name = str(read_dataset_json(dataset_dir).get("name") or dataset_dir.name)
    synthetic = is_synthetic_dataset(dataset_dir)
    labels = _label_infos(label_map, dataset_dir)

    def model_spec(epochs_done: int) -> ModelSpec:
        dice_text = "no validation" if best_dice is None else \
            f"best validation Dice {best_dice:.3f} (epoch {best_epoch})"
        description = (f"{'3D Attention U-Net' if config.arch == 'attention' else '3D U-Net'}"
                       f" trained on {dataset_name} ({len(train_cases)} training / "
                       f"{len(val_cases)} validation cases, {epochs_done} "
                       f"epoch{'s' if epochs_done != 1 else ''}; {dice_text}).")
        if synthetic:
            description += " SYNTHETIC training data: not a clinical model."
        summary = {
            "dataset": dataset_name, "synthetic": synthetic,
            "train_cases": len(train_cases), "val_cases": len(val_cases),
            "val_case_ids": [case.id for case in val_cases],
            "epochs": epochs_done, "epochs_planned": config.epochs,
            "iterations_per_epoch": config.iterations_per_epoch,
            "batch_size": config.batch_size, "world_size": ctx.world_size,
            "optimizer": config.optimizer, "lr": config.base_lr,
            "lr_schedule": _lr_schedule_summary(lr_phases, epochs_done), "labels": config.labels,
            "best_val_dice": best_dice, "best_epoch": best_epoch,
            "val_dice_grid": f"model grid ({', '.join(f'{s:g}' for s in config.spacing_zyx)}"
                             " mm, z, y, x)",
            "date": date.today().isoformat(), "software": f"AttentionUNetSegment {__version__}",
        }
        return ModelSpec(format_version=FORMAT_VERSION, architecture=arch,
                         network_args=dict(network_args), labels=labels,
                         spacing_zyx=tuple(float(s) for s in config.spacing_zyx),
                         intensity=intensity, patch_size_zyx=tuple(config.patch_size_zyx),
                         training=summary, description=description)

    reporter.line(f"training {arch} on {len(train_cases)} cases (validation {len(val_cases)}) "
                  f"on {device}{f' x {ctx.world_size} ranks' if ctx.enabled else ''}; "
                  f"epochs {start_epoch + 1}..{config.epochs}; output {out}")
    for epoch in range(start_epoch, config.epochs):
        t_epoch = time.perf_counter()
        dataset.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=config.batch_size, num_workers=config.num_workers,
            pin_memory=device.type == "cuda")
        # Channels-last makes oneDNN's 3D convolutions ~1.7x faster on CPU (measured: 1.6 vs
        # 2.8 s per step at 64x96x96, batch 2). Re-applied every epoch because validation
        # (inference) hands the model back in the default layout. Not under DDP: its gradient
        # buckets are laid out for the parameters' layout at wrap time.
        channels_last = device.type == "cpu" and not ctx.enabled
        if channels_last:
            model.to(memory_format=torch.channels_last_3d)
        model.train()
        reporter.start_bar()
        loss_sum, lr = 0.0, config.base_lr
        for it, (image, label) in enumerate(loader):
            # image (B, 1, z, y, x) float32, label (B, z, y, x) int64
            step = epoch * config.iterations_per_epoch + it
            lr = _lr_at(config, step, total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            image = image.to(device, non_blocking=True)
            label = label.to(device, non_blocking=True)
            augment_rng.manual_seed(_seed_of(config.seed, ctx.rank, epoch, it, 1))
            image, label = augment_batch(image, label, config.augmentation, augment_rng, pad,
                                         config.spacing_zyx)
            if channels_last:
                image = image.contiguous(memory_format=torch.channels_last_3d)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                logits = model(image)                       # (B, K, z, y, x)
            loss = loss_fn(logits, label)                   # float32
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.grad_clip > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            scaler.step(optimizer)
            scaler.update()

            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise RuntimeError(f"the loss became {loss_value} at epoch {epoch + 1}, "
                                   f"iteration {it + 1}; try a lower --lr")
            loss_sum += loss_value
            done = it + 1
            rate = done * config.batch_size * ctx.world_size / (time.perf_counter() - t_epoch)
            reporter.step(done / config.iterations_per_epoch,
                          (epoch + done / config.iterations_per_epoch) / config.epochs,
                          f"ep {epoch + 1}/{config.epochs} loss {loss_sum / done:.4f} "
                          f"{rate:.1f} patch/s")
        seconds_train = time.perf_counter() - t_epoch
        ctx.broadcast_buffers(raw_model)
        train_loss = ctx.sum([loss_sum / config.iterations_per_epoch])[0] / ctx.world_size

        # ---- validation (every rank, sharded), decisions identical on every rank
        val_dice = None
        if val_data and ((epoch + 1) % config.val_every == 0 or epoch + 1 == config.epochs):
            val_dice = _validate(raw_model, val_data, config, n_classes, use_amp, ctx)
        improved = val_dice is not None and (best_dice is None or val_dice > best_dice)
        if improved:
            best_dice, best_epoch = val_dice, epoch + 1
        history.append({"epoch": epoch + 1, "train_loss": train_loss, "val_dice": val_dice,
                        "lr": lr, "seconds": time.perf_counter() - t_epoch,
                        "patches_per_s": config.iterations_per_epoch * config.batch_size
                        * ctx.world_size / seconds_train})

        # ---- files (rank 0). Order: model files, then the resume state, then the log,
        # so a kill between writes at worst repeats this epoch on --resume.
        if ctx.is_main:
            spec = model_spec(epoch + 1)
            if improved or not val_data:     # without validation the newest model is "best"
                save_model(out / MODEL_FILE, raw_model, spec)
            save_model(out / LAST_FILE, raw_model, spec)
            _atomic_torch_save({
                "format": CHECKPOINT_FORMAT, "version": 1, "epoch": epoch + 1,
                "config": config.to_dict(), "model": raw_model.state_dict(),
                "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                "history": history, "lr_phases": lr_phases,
                "best_val_dice": best_dice, "best_epoch": best_epoch,
                "train_ids": [case.id for case in train_cases],
                "val_ids": [case.id for case in val_cases],
                "torch_rng": torch.get_rng_state(),
            }, out / CHECKPOINT_FILE)
            _write_log(out / LOG_FILE, history)
            figure_error = _write_curve(out / CURVE_FILE, history,
                                        f"{arch} on {dataset_name}")
            if figure_error and epoch == start_epoch:
                reporter.line(f"warning: no learning curve ({figure_error})")
        row = history[-1]
        val_text = "" if val_dice is None else \
            f"  val Dice {val_dice:.4f} (best {best_dice:.4f} @ {best_epoch})"
        reporter.line(f"epoch {epoch + 1}/{config.epochs}  loss {train_loss:.4f}{val_text}  "
                      f"lr {lr:.2e}  {row['seconds']:.0f} s  {row['patches_per_s']:.1f} "
                      "patches/s", (epoch + 1) / config.epochs)
        ctx.barrier()

    if ctx.rank == 0 and val_data and (out / MODEL_FILE).exists():
        _record_cpu_bf16_agreement(out / MODEL_FILE, val_data[:2], reporter)
    reporter.line(f"done: {out / MODEL_FILE}" + ("" if best_dice is None else
                  f" (best validation Dice {best_dice:.4f} at epoch {best_epoch})"))
    return TrainResult(raw_model, history, best_dice, best_epoch, out / MODEL_FILE)


def _record_cpu_bf16_agreement(model_path: Path, cases: list[LoadedCase], reporter: _Reporter) -> None:
    """Measure bf16-vs-fp32 CPU agreement of the best model and store it in its file, so that
    `segment` may use bf16 on CPUs that have it (see precision.py)."""
    from ..core.devices import CPU_BF16_KEY
    from ..files.modelfile import load_model, save_model
    from .bf16_check import measure_cpu_bf16_agreement

    model, spec = load_model(model_path)
    agreement = measure_cpu_bf16_agreement(model, [case.image for case in cases], spec.patch_size_zyx)
    if agreement is None:
        reporter.line("CPU bf16 agreement not measured (this CPU has no native bf16)")
        return
    spec.training[CPU_BF16_KEY] = agreement
    save_model(model_path, model, spec)
    reporter.line(f"CPU bf16 vs fp32 agreement on {len(cases)} validation case(s): Dice {agreement:.4f}")


# ---------------------------------------------------------------------------------------------
# Command line


