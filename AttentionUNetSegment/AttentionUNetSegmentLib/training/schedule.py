"""Optimiser, learning-rate schedule and the schedule's record in the model file."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from .config import TrainConfig


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam (the paper) or SGD with Nesterov momentum 0.99 (nnU-Net)."""
    if config.optimizer == "sgd":
        decay = 3e-5 if config.weight_decay is None else config.weight_decay
        return torch.optim.SGD(model.parameters(), lr=config.base_lr, momentum=0.99,
                               nesterov=True, weight_decay=decay)
    decay = 0.0 if config.weight_decay is None else config.weight_decay
    return torch.optim.Adam(model.parameters(), lr=config.base_lr, weight_decay=decay)


def lr_at(config: TrainConfig, step: int, total_steps: int) -> float:
    """The learning rate of global step `step` (0-based) of `total_steps`."""
    if config.schedule == "poly":    # nnU-Net's polynomial decay to 0
        return config.base_lr * (1.0 - min(step, total_steps) / total_steps) ** 0.9
    return config.base_lr


def lr_phases_from_log(history: list[dict]) -> list[dict]:
    """Learning-rate phases rebuilt from the per-epoch log of a checkpoint that predates
    `lr_phases`: a new phase wherever the logged rate changes (right for constant schedules,
    which is all such checkpoints used)."""
    phases: list[dict] = []
    for row in history:
        if not phases or phases[-1]["lr"] != row["lr"]:
            phases.append({"first_epoch": int(row["epoch"]), "schedule": "constant", "lr": row["lr"]})
    return phases


def extend_lr_phases(phases: list[dict], config: TrainConfig, first_epoch: int) -> list[dict]:
    """Each start or resume with a different rate or schedule opens a phase, so the model file
    records the whole schedule (e.g. 5e-4 for epochs 1-48, then 1e-4), not just the last --lr."""
    phases = list(phases)
    if not phases or (phases[-1]["schedule"], phases[-1]["lr"]) != (config.schedule,
                                                                    config.base_lr):
        phases.append({"first_epoch": first_epoch, "schedule": config.schedule,
                       "lr": config.base_lr})
    return phases


def lr_schedule_summary(phases: list[dict], epochs_done: int) -> list[dict]:
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


def seed_of(*keys: int) -> int:
    """A 63-bit seed from several integers (numpy's SeedSequence mixes them well)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint64)[0]
               >> np.uint64(1))
