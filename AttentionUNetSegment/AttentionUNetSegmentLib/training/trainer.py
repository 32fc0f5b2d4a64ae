"""`attention-unet-segment train`: train a 3D (Attention) U-Net on CT/label pairs.

The loop reads top to bottom in `_train`: set the run up (preparation.py: data, network,
optimiser), put back an interrupted run (checkpoints.py), then one `_run_epoch` per epoch. The
run's changing state is one `checkpoints.TrainingState`, saved each epoch and restored on
--resume by checkpoints.py alone.

    DATASET_DIR (+ --extra-dataset DIRs, mixing.py) -> data.find_cases
      -> loading.load_case (core.preprocessing.preprocess: the inference code path)
      -> sampling.PatchDataset (foreground oversampling, datasets mixed with given shares,
         one random stream per rank)
      -> augmentation.augment_batch -> randomisation.randomise_domain (on the device)
      -> network -> Dice + CE -> Adam/SGD (AMP on CUDA)
      -> each epoch: sliding-window validation Dice, MODEL_DIR/model.pt (best), last.pt,
         checkpoint_last.pt (resume state), training_log.csv, learning_curve.png (checkpoints.py)

Multi-GPU / multi-node: run the same command under `torchrun --nproc-per-node N`; the
environment variables torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK) switch on
DistributedDataParallel (distributed.py). Every rank trains on its own patch stream, validation
cases are shared out between ranks, and only rank 0 writes files or prints. MODEL_DIR must be on
a filesystem every node can read (for --resume and --cache).

Each epoch's patches and augmentations come from generators seeded by (seed, rank, epoch,
index), so a resumed run replays exactly what an uninterrupted one does.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .augmentation import augment_batch
from .bf16_check import record_cpu_bf16_agreement
from .checkpoints import (
    CURVE_FILE,
    LOG_FILE,
    MODEL_FILE,
    TrainingState,
    prepare_output,
    read_resume_state,
    restore_training_state,
    save_epoch,
    write_curve,
    write_log,
)
from .config import TrainConfig
from .distributed import DistributedContext, start_distributed
from .randomisation import randomise_domain
from .preparation import TrainingData, build_training_state, distribute, gather_data
from .reporting import ProgressCallback, Reporter
from .sampling import PatchDataset, PatchSampler
from .schedule import extend_lr_phases, lr_at, seed_of


@dataclass
class TrainResult:
    model: nn.Module                       # the trained network (last epoch), unwrapped
    history: list[dict]                    # one row per epoch (checkpoints.LOG_COLUMNS)
    best_val_dice: float | None
    best_epoch: int | None
    model_path: Path


def train(config: TrainConfig, dataset_dir: str | os.PathLike, out_dir: str | os.PathLike,
          resume: bool = False, progress: ProgressCallback | bool | None = True,
          overwrite: bool = False) -> TrainResult:
    """Train and write MODEL_DIR (see the module docstring). Works alone or under torchrun.

    progress: True = bar and epoch lines on stderr, a callable gets (fraction, message),
    None/False = silent. Only rank 0 reports. Under torchrun the process group is left on every
    way out, so each rank's process ends as soon as its work does.
    """
    config.validate()
    ctx = start_distributed(config.device)
    try:
        return _train(config, Path(dataset_dir), Path(out_dir), resume, overwrite, ctx,
                      Reporter(progress, ctx.is_main))
    finally:
        ctx.close()


def _train(config: TrainConfig, dataset_dir: Path, out: Path, resume: bool, overwrite: bool,
           ctx: DistributedContext, reporter: Reporter) -> TrainResult:
    prepare_output(out, resume, overwrite, ctx)
    saved = read_resume_state(out, config, ctx.device) if resume else None
    data = gather_data(config, dataset_dir, out, saved, ctx, reporter)
    run = build_training_state(config, data, ctx, resuming=saved is not None)
    if saved is not None:
        restore_training_state(run, saved)             # as the interrupted run left it
    run.lr_phases = extend_lr_phases(run.lr_phases, config, run.start_epoch + 1)
    distribute(run, ctx)                               # DistributedDataParallel under torchrun
    dataset = PatchDataset(data.train, PatchSampler(config.patch_size_zyx,
                                                    config.foreground_probability, data.pad),
                           config.iterations_per_epoch * config.batch_size, config.batch_size,
                           config.seed, ctx.rank, data.case_probabilities)
    names = " + ".join(source.name for source in data.record.sources)
    reporter.line(f"training {config.arch} on {len(data.train)} cases of {names} "
                  f"(validation {len(data.val)}) on {ctx.device}"
                  f"{f' x {ctx.world_size} ranks' if ctx.enabled else ''}; epochs "
                  f"{run.start_epoch + 1}..{config.epochs}; output {out}")
    for epoch in range(run.start_epoch, config.epochs):
        _run_epoch(config, data, run, dataset, epoch, out, ctx, reporter)

    if ctx.is_main and data.val and (out / MODEL_FILE).exists():
        record_cpu_bf16_agreement(out / MODEL_FILE, data.val[:2], reporter.line)
    reporter.line(f"done: {out / MODEL_FILE}" + ("" if run.best_dice is None else
                  f" (best validation Dice {run.best_dice:.4f} at epoch {run.best_epoch})"))
    return TrainResult(run.raw_model, run.history, run.best_dice, run.best_epoch, out / MODEL_FILE)


def _run_epoch(config: TrainConfig, data: TrainingData, run: TrainingState, dataset: PatchDataset,
               epoch: int, out: Path, ctx: DistributedContext, reporter: Reporter) -> None:
    """One epoch: train, validate (every rank, sharded), write the files (rank 0), report."""
    t_epoch = time.perf_counter()
    loss_sum, lr = _train_one_epoch(config, data, run, dataset, epoch, ctx, reporter, t_epoch)
    seconds_train = time.perf_counter() - t_epoch
    ctx.broadcast_buffers(run.raw_model)
    train_loss = ctx.sum([loss_sum / config.iterations_per_epoch])[0] / ctx.world_size

    val_dice = None      # decisions below are identical on every rank
    if data.val and ((epoch + 1) % config.val_every == 0 or epoch + 1 == config.epochs):
        val_dice = _validate(run.raw_model, data.val, config, run.use_amp, ctx)
    improved = val_dice is not None and (run.best_dice is None or val_dice > run.best_dice)
    if improved:
        run.best_dice, run.best_epoch = val_dice, epoch + 1
    run.history.append({"epoch": epoch + 1, "train_loss": train_loss, "val_dice": val_dice,
                        "lr": lr, "seconds": time.perf_counter() - t_epoch,
                        "patches_per_s": config.iterations_per_epoch * config.batch_size
                        * ctx.world_size / seconds_train})
    if ctx.is_main:
        save_epoch(config, data, run, epoch + 1, improved, out, ctx.world_size)
        write_log(out / LOG_FILE, run.history)
        figure_error = write_curve(out / CURVE_FILE, run.history,
                                   f"{config.arch} on {data.record.sources[0].name}")
        if figure_error and epoch == run.start_epoch:
            reporter.line(f"warning: no learning curve ({figure_error})")
    row = run.history[-1]
    val_text = "" if val_dice is None else \
        f"  val Dice {val_dice:.4f} (best {run.best_dice:.4f} @ {run.best_epoch})"
    reporter.line(f"epoch {epoch + 1}/{config.epochs}  loss {train_loss:.4f}{val_text}  "
                  f"lr {lr:.2e}  {row['seconds']:.0f} s  {row['patches_per_s']:.1f} "
                  "patches/s", (epoch + 1) / config.epochs)
    ctx.barrier()


def _train_one_epoch(config: TrainConfig, data: TrainingData, run: TrainingState,
                     dataset: PatchDataset, epoch: int, ctx: DistributedContext,
                     reporter: Reporter, t_epoch: float) -> tuple[float, float]:
    """The optimisation steps of one epoch -> (sum of the step losses, last learning rate)."""
    device = ctx.device
    dataset.set_epoch(epoch)
    # Not persistent: the workers (and CUDA's pin-memory thread) end with the epoch's last
    # batch, so nothing outlives the training loop and delays the process's exit.
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=config.batch_size, num_workers=config.num_workers,
        pin_memory=device.type == "cuda", persistent_workers=False)
    # Channels-last makes oneDNN's 3D convolutions ~1.7x faster on CPU (measured: 1.6 vs
    # 2.8 s per step at 64x96x96, batch 2). Re-applied every epoch because validation
    # (inference) hands the model back in the default layout. Not under DDP: its gradient
    # buckets are laid out for the parameters' layout at wrap time.
    channels_last = device.type == "cpu" and not ctx.enabled
    if channels_last:
        run.model.to(memory_format=torch.channels_last_3d)
    run.model.train()
    reporter.start_bar()
    loss_sum, lr = 0.0, config.base_lr
    total_steps = config.epochs * config.iterations_per_epoch
    for it, (image, label) in enumerate(loader):
        # image (B, 1, z, y, x) float32, label (B, z, y, x) int64
        lr = lr_at(config, epoch * config.iterations_per_epoch + it, total_steps)
        image, label = _augmented_batch(config, data, run, image, label,
                                        (ctx.rank, epoch, it), device)
        if channels_last:
            image = image.contiguous(memory_format=torch.channels_last_3d)
        loss_value = _optimisation_step(config, run, image, label, lr)
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
    del loader
    return loss_sum, lr


def _augmented_batch(config: TrainConfig, data: TrainingData, run: TrainingState,
                     image: torch.Tensor, label: torch.Tensor, step_key: tuple[int, int, int],
                     device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Spatial and intensity augmentation, then domain randomisation, each from a generator
    seeded by (seed, rank, epoch, iteration, stage): replayed exactly on --resume."""
    image = image.to(device, non_blocking=True)
    label = label.to(device, non_blocking=True)
    run.augment_rng.manual_seed(seed_of(config.seed, *step_key, 1))
    image, label = augment_batch(image, label, config.augmentation, run.augment_rng, data.pad,
                                 config.spacing_zyx)
    if config.randomisation.enabled:
        run.augment_rng.manual_seed(seed_of(config.seed, *step_key, 2))
        image = randomise_domain(image, label, config.randomisation, run.augment_rng,
                                 data.value_range)
    return image, label


def _optimisation_step(config: TrainConfig, run: TrainingState, image: torch.Tensor,
                       label: torch.Tensor, lr: float) -> float:
    """Forward, loss, backward, clipped step -> the loss value."""
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    with torch.autocast(image.device.type, dtype=run.amp_dtype, enabled=run.use_amp):
        logits = run.model(image)                       # (B, K, z, y, x)
    loss = run.loss_fn(logits, label)                   # float32
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    if config.grad_clip > 0:
        run.scaler.unscale_(run.optimizer)
        nn.utils.clip_grad_norm_(run.model.parameters(), config.grad_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    return loss.item()


def _mean_dice(pred: np.ndarray, truth: np.ndarray, n_classes: int) -> float:
    from ..evaluation.metrics import dice
    return float(np.mean([dice(pred == c, truth == c) for c in range(1, n_classes)]))


def _validate(model: nn.Module, cases: list, config: TrainConfig, use_amp: bool,
              ctx: DistributedContext) -> float:
    """Mean Dice over the validation cases and their output classes, on the model grid, shared
    out between ranks. Context classes are folded into the background as `segment` folds them,
    so only the pancreas is scored, and on what `segment` would decide."""
    from ..core.inference import InferenceOptions, sliding_window_predict

    options = InferenceOptions(patch_size_zyx=tuple(config.patch_size_zyx),
                               overlap=config.val_overlap, batch_size=config.batch_size,
                               device=str(ctx.device), precision="auto" if use_amp else "fp32",
                               return_attention=False,
                               context_from=2 if config.context_classes else None)
    total = 0.0
    for case in cases[ctx.rank::ctx.world_size]:
        logits = sliding_window_predict(model, case.image, options).logits   # (K, z, y, x)
        total += _mean_dice(logits.argmax(0), case.label, logits.shape[0])
    return ctx.sum([total])[0] / len(cases)
