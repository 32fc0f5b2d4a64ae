"""Setting a run up: the data of every source loaded onto the model grid, and the network
(fresh, or from --init-from's model file), optimiser and scaler. What is saved each epoch and
restored by --resume is checkpoints.py's."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..core.errors import InputError
from .checkpoints import TrainingState
from .config import TrainConfig
from .data import (
    Case,
    check_merge_is_safe,
    find_cases,
    is_synthetic_dataset,
    num_classes,
    parse_label_map,
    split_cases,
)
from .distributed import DistributedContext
from .loading import LoadedCase, background_value, load_case
from .losses import DiceCELoss
from .mixing import DatasetSource, case_probabilities, dataset_sources
from .randomisation import normalised_window
from .reporting import Reporter
from .schedule import make_optimizer
from .summary import TrainingRecord, label_infos


@dataclass
class TrainingData:
    """Every case of the run on the model grid, and what the model file says about them."""

    record: TrainingRecord
    train: list[LoadedCase]                      # every source's, the main dataset first
    val: list[LoadedCase]                        # in-memory arrays (inference writes to them)
    case_probabilities: list[float] | None       # per training case; None: uniform
    n_classes: int                               # network outputs, background included
    labels: list                                 # core.labels.LabelInfo per class > 0
    intensity: object                            # core.preprocessing.IntensitySpec
    pad: float                                   # normalised air: padding outside volumes
    value_range: tuple[float, float]             # normalised HU window


def _load_cases(cases: list[Case], config: TrainConfig, intensity, label_map,
                cache_dir: Path | None, ctx: DistributedContext, reporter: Reporter,
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


def _cases_by_id(cases: list[Case], ids: list[str], where) -> list[Case]:
    """The cases of an interrupted run, in its order; all must still be there."""
    by_id = {case.id: case for case in cases}
    missing = [cid for cid in ids if cid not in by_id]
    if missing:
        raise InputError(where, f"case(s) of the interrupted run are missing: "
                                f"{', '.join(missing[:3])}")
    return [by_id[cid] for cid in ids]


def _source_label_map(source: DatasetSource, n_classes: int | None) -> dict[int, int] | None:
    label_map = parse_label_map(source.labels)
    if label_map is None:
        check_merge_is_safe(source.path)
    if n_classes is not None and num_classes(label_map) > n_classes:
        raise InputError(source.path, f"label map {source.labels!r} has more classes than the "
                                      f"main dataset's ({n_classes - 1})")
    return label_map


def _split(config: TrainConfig, sources: list[DatasetSource], state: dict | None
           ) -> tuple[list[list[Case]], list[Case]]:
    """Training cases per source and the validation cases (main dataset): the interrupted
    run's on --resume, a seeded split otherwise."""
    main_cases = find_cases(sources[0].path)
    extra_cases = [find_cases(source.path) for source in sources[1:]]
    if state is None:
        train_main, val = split_cases(main_cases, config.val_fraction, config.val_cases,
                                      config.seed)
        return [train_main, *extra_cases], val
    extra_ids = state.get("extra_ids") or [[] for _ in extra_cases]
    train = [_cases_by_id(main_cases, state["train_ids"], sources[0].path)]
    train += [_cases_by_id(cases, ids, source.path)
              for cases, ids, source in zip(extra_cases, extra_ids, sources[1:])]
    return train, _cases_by_id(main_cases, state["val_ids"], sources[0].path)


def gather_data(config: TrainConfig, dataset_dir: Path, out: Path, state: dict | None,
                ctx: DistributedContext, reporter: Reporter) -> TrainingData:
    """Find, split and load every source's cases (the same preprocessing as inference)."""
    from ..core.preprocessing import IntensitySpec

    sources = dataset_sources(dataset_dir, config.labels, config.extra_datasets)
    main_map = _source_label_map(sources[0], None)
    n_classes = num_classes(main_map)
    label_maps = [main_map] + [_source_label_map(s, n_classes) for s in sources[1:]]
    train_cases, val_cases = _split(config, sources, state)
    intensity = IntensitySpec()
    cache_dir = out / "cache" if config.cache else None
    train, counts = [], []
    for source, cases, label_map in zip(sources, train_cases, label_maps):
        what = "training" if source is sources[0] else f"training ({source.name})"
        train += _load_cases(cases, config, intensity, label_map, cache_dir, ctx, reporter, what)
        counts.append(len(cases))
    val = _load_cases(val_cases, config, intensity, main_map, cache_dir, ctx, reporter,
                      "validation")
    for case in val:      # inference wants writable in-memory arrays, not memory maps
        case.image, case.label = np.array(case.image), np.array(case.label)
    probabilities = None
    shares = [1.0]
    if len(sources) > 1:
        probabilities = case_probabilities(counts, [source.weight for source in sources])
        bounds = np.cumsum([0, *counts])
        shares = [float(sum(probabilities[a:b])) for a, b in zip(bounds[:-1], bounds[1:])]
    initialised = None if state is None else state.get("initialised_from")
    if state is None and config.init_from:
        initialised = describe_init_model(config.init_from)
    record = TrainingRecord(sources, train_cases, val_cases, shares,
                            [is_synthetic_dataset(s.path) for s in sources], initialised)
    return TrainingData(record, train, val, probabilities, n_classes,
                        label_infos(main_map, dataset_dir), intensity,
                        background_value(intensity), normalised_window(intensity))


def describe_init_model(path: str) -> dict:
    """What the model file of --init-from was: name, checksum, its own training data."""
    from ..files.modelfile import read_model_spec

    spec = read_model_spec(path)
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    return {"file": Path(path).name, "sha256_16": digest,
            "dataset": spec.training.get("dataset"), "epochs": spec.training.get("epochs")}


def _initial_weights(config: TrainConfig, model: nn.Module, network_args: dict,
                     intensity) -> None:
    """--init-from: copy the weights of a model file with the same network (fine-tuning)."""
    from ..files.modelfile import load_model

    source, spec = load_model(config.init_from)

    def plain(args: dict) -> dict:
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in args.items()}
    wanted = (config.arch, plain(network_args))
    found = (spec.architecture, plain(spec.network_args))
    if wanted != found:
        raise InputError(config.init_from, f"--init-from needs the same network: the file has "
                                           f"{found[0]} {found[1]}, this run builds "
                                           f"{wanted[0]} {wanted[1]}")
    if spec.intensity != intensity or tuple(spec.spacing_zyx) != tuple(config.spacing_zyx):
        raise InputError(config.init_from, "--init-from: the model was trained on another grid "
                                           f"or intensity window (spacing {spec.spacing_zyx} mm, "
                                           f"{spec.intensity}); give the same --spacing")
    model.load_state_dict(source.state_dict())


def build_training_state(config: TrainConfig, data: TrainingData, ctx: DistributedContext,
                         resuming: bool = False) -> TrainingState:
    """The network (fresh, or with --init-from's weights unless `resuming`), optimiser and scaler
    on this rank's device; checkpoints.restore_training_state then puts back a resumed run's state."""
    from ..core.network import build_network

    device = ctx.device
    use_amp = device.type == "cuda" if config.amp is None else bool(config.amp and
                                                                      device.type == "cuda")
    network_args = {"in_channels": 1, "n_classes": data.n_classes, "widths": list(config.widths)}
    torch.manual_seed(config.seed)        # same initial weights on every rank
    model = build_network(config.arch, **network_args)
    if config.init_from and not resuming:
        _initial_weights(config, model, network_args, data.intensity)
    model = model.to(device)
    if ctx.enabled and config.sync_batchnorm and device.type == "cuda":
        # Same state-dict keys as BatchNorm3d, so model.pt loads into the plain network.
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = make_optimizer(model, config)
    # bf16 where the GPU has it (Ampere+): fp32's exponent range, so no loss scaling needed;
    # fp16 with a GradScaler on older GPUs.
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp and amp_dtype == torch.float16)
    return TrainingState(model, model, network_args, optimizer, scaler,
                         DiceCELoss(config.dice_weight, config.ce_weight),
                         torch.Generator(device=device), use_amp, amp_dtype)


def distribute(run: TrainingState, ctx: DistributedContext) -> None:
    """Under torchrun: wrap the network in DistributedDataParallel (model files keep raw_model)."""
    if ctx.enabled:
        device = ctx.device
        run.model = nn.parallel.DistributedDataParallel(
            run.raw_model, device_ids=[device.index] if device.type == "cuda" else None)
