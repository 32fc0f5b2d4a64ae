"""A run's state and its files, saved and resumed in this one module.

`TrainingState` is everything that changes while a run trains (network, optimiser, scaler,
random generator, history, best score, learning-rate phases). Each epoch `save_epoch` writes
MODEL_DIR: model.pt (best), last.pt, checkpoint_last.pt (the resume state), and `write_log` /
`write_curve` training_log.csv and learning_curve.png; `--resume` reads the checkpoint back with
`read_resume_state` and `restore_training_state`, the exact inverse.

Crash safety: every file is written to a temporary name and renamed (os.replace is atomic), and
the resume state is written at the end of every epoch, so a kill -9 loses at most the epoch in
progress. Only rank 0 writes.
"""

from __future__ import annotations

import csv
import io
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from ..core.errors import InputError
from .config import FIXED_ON_RESUME, TrainConfig
from .distributed import DistributedContext
from .schedule import lr_phases_from_log
from .summary import build_model_spec

MODEL_FILE, LAST_FILE, CHECKPOINT_FILE = "model.pt", "last.pt", "checkpoint_last.pt"
LOG_FILE, CURVE_FILE = "training_log.csv", "learning_curve.png"
CHECKPOINT_FORMAT = "AttentionUNetSegment-train-checkpoint"
LOG_COLUMNS = ("epoch", "train_loss", "val_dice", "lr", "seconds", "patches_per_s")


@dataclass
class TrainingState:
    """The network and everything a checkpoint restores."""

    raw_model: nn.Module                         # unwrapped: what model files store
    model: nn.Module                             # DDP-wrapped under torchrun
    network_args: dict
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    loss_fn: nn.Module
    augment_rng: torch.Generator
    use_amp: bool
    amp_dtype: torch.dtype
    start_epoch: int = 0
    history: list[dict] = field(default_factory=list)
    best_dice: float | None = None
    best_epoch: int | None = None
    lr_phases: list[dict] = field(default_factory=list)


def save_model_file(path: Path, model: torch.nn.Module, spec, weights_bf16: bool) -> None:
    """A model file (files.modelfile format). With `weights_bf16` its floating-point weights are
    stored in bfloat16: half the size (the paper-width network: 12.5 MB instead of 25), and
    `load_model` casts them back into the float32 network. Checkpoints keep float32."""
    import copy

    from ..files.modelfile import save_model
    if weights_bf16:
        model = copy.deepcopy(model).to(torch.bfloat16)    # integer buffers stay integers
    save_model(path, model, spec)


def atomic_torch_save(obj, path: Path) -> None:
    from ..files.writing import atomic_output
    with atomic_output(path) as tmp:
        torch.save(obj, tmp)


def write_log(path: Path, history: list[dict]) -> None:
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
        tmp.write_text(buffer.getvalue(), encoding="utf-8")


def write_curve(path: Path, history: list[dict], title: str = "") -> str | None:
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


def prepare_output(out: Path, resume: bool, overwrite: bool, ctx: DistributedContext) -> None:
    """Refuse to overwrite a finished model without --overwrite; on a fresh start remove an
    older run's resume state; on --resume tidy up temporaries a kill left behind."""
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder")
    if resume:
        if not (out / CHECKPOINT_FILE).exists():
            raise InputError(out / CHECKPOINT_FILE, "no checkpoint to resume from")
        if ctx.is_main:
            # A kill -9 in the middle of a write leaves files.writing.atomic_output's private
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


def save_epoch(config: TrainConfig, data, run: TrainingState, epochs_done: int, improved: bool, out: Path,
               world_size: int) -> None:
    """Rank 0's files after an epoch (`data`: the run's preparation.TrainingData). Order: model
    files, then the resume state, so a kill between writes at worst repeats this epoch."""
    spec = build_model_spec(config, data.record, run.network_args, data.labels, data.intensity,
                            epochs_done, run.lr_phases, run.best_dice, run.best_epoch, world_size)
    if improved or not data.val:     # without validation the newest model is "best"
        save_model_file(out / MODEL_FILE, run.raw_model, spec, config.weights_bf16)
    save_model_file(out / LAST_FILE, run.raw_model, spec, config.weights_bf16)
    record = data.record
    atomic_torch_save({
        "format": CHECKPOINT_FORMAT, "version": 1, "epoch": epochs_done,
        "config": config.to_dict(), "model": run.raw_model.state_dict(),
        "optimizer": run.optimizer.state_dict(), "scaler": run.scaler.state_dict(),
        "history": run.history, "lr_phases": run.lr_phases,
        "best_val_dice": run.best_dice, "best_epoch": run.best_epoch,
        "train_ids": [case.id for case in record.train_cases[0]],
        "extra_ids": [[case.id for case in cases] for cases in record.train_cases[1:]],
        "val_ids": [case.id for case in record.val_cases],
        "initialised_from": record.initialised_from,
        "torch_rng": torch.get_rng_state(),
    }, out / CHECKPOINT_FILE)


def read_resume_state(out: Path, config: TrainConfig, device: torch.device) -> dict:
    """The interrupted run's state; InputError when `config` would train a different model."""
    state = read_checkpoint(out / CHECKPOINT_FILE, device)
    stored = TrainConfig.from_dict(state["config"])
    changed = [name for name in FIXED_ON_RESUME if getattr(stored, name) != getattr(config, name)]
    if changed:
        raise InputError(out / CHECKPOINT_FILE, f"--resume with different {', '.join(changed)} "
                                                "than the interrupted run")
    return state


def restore_training_state(run: TrainingState, state: dict) -> None:
    """Put back what save_epoch saved: weights, optimiser, scaler, epoch, history, best score,
    learning-rate phases and the global random state (the run continues bit for bit)."""
    run.raw_model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    if state["scaler"] and run.scaler.is_enabled():   # empty when saved by a disabled one
        run.scaler.load_state_dict(state["scaler"])
    run.start_epoch, run.history = int(state["epoch"]), list(state["history"])
    run.best_dice, run.best_epoch = state["best_val_dice"], state["best_epoch"]
    run.lr_phases = list(state.get("lr_phases") or lr_phases_from_log(run.history))
    torch.set_rng_state(state["torch_rng"].cpu())
