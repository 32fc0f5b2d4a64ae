"""What a trained model file says about its training: labels, description and the training
summary (data sources and the exact cases, schedule, augmentation, validation Dice)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

from .. import __version__
from .config import TrainConfig
from .data import Case, num_classes, read_dataset_json
from .mixing import DatasetSource
from .schedule import lr_schedule_summary


def label_infos(label_map: dict[int, int] | None, dataset_dir: Path) -> list:
    """LabelInfo per class: 1 is the pancreas; extra classes are named from dataset.json, a
    class that merges several labels by all of them ("Kidney_right + kidney_left")."""
    from ..core.labels import PANCREAS, LabelInfo

    n = num_classes(label_map)
    names = read_dataset_json(dataset_dir).get("labels", {})
    infos = [PANCREAS]
    palette = [(0.78, 0.27, 0.27), (0.35, 0.6, 0.9), (0.5, 0.8, 0.4)]
    for cls in range(2, n):
        sources = [src for src, dst in (label_map or {}).items() if dst == cls]
        name = " + ".join(str(names.get(str(src), f"label {src}")) for src in sources) or f"class {cls}"
        infos.append(LabelInfo(cls, name.capitalize(), palette[(cls - 2) % len(palette)]))
    return infos


@dataclass
class TrainingRecord:
    """What the run trained on, fixed once the data are loaded."""

    sources: list[DatasetSource]          # the main dataset first
    train_cases: list[list[Case]]         # per source
    val_cases: list[Case]                 # from the main dataset
    probabilities: list[float]            # per source: share of the patches drawn from it
    synthetic: list[bool]                 # per source: dataset.json says synthetic
    initialised_from: dict | None = None  # --init-from: the starting model's file and summary

    def trained_on(self) -> list[dict]:
        """Per source: name, folder, label map, share of patches, the case ids and their files
        (links resolved), so `evaluate --model` can tell whether a ground truth was trained on."""
        return [{"dataset": source.name, "path": source.path, "labels": source.labels,
                 "synthetic": synthetic, "patch_share": round(share, 6),
                 "case_ids": [case.id for case in cases],
                 "image_files": [str(Path(case.image_path).resolve()) for case in cases],
                 "label_files": [str(Path(case.label_path).resolve()) for case in cases]}
                for source, cases, share, synthetic in zip(self.sources, self.train_cases,
                                                           self.probabilities, self.synthetic)]


def _description(config: TrainConfig, record: TrainingRecord, epochs_done: int,
                 best_dice: float | None, best_epoch: int | None) -> str:
    dice_text = "no validation" if best_dice is None else \
        f"best validation Dice {best_dice:.3f} (epoch {best_epoch})"
    names = " + ".join(source.name for source in record.sources)
    n_train = sum(len(cases) for cases in record.train_cases)
    text = (f"{'3D Attention U-Net' if config.arch == 'attention' else '3D U-Net'}"
            f" trained on {names} ({n_train} training / {len(record.val_cases)} validation "
            f"cases, {epochs_done} epoch{'s' if epochs_done != 1 else ''}; {dice_text}).")
    if record.initialised_from:
        text += f" Fine-tuned from {record.initialised_from['file']}."
    if all(record.synthetic):
        text += " SYNTHETIC training data: not a clinical model."
    elif any(record.synthetic):
        text += " Partly synthetic training data: not a clinical model."
    return text


def training_summary(config: TrainConfig, record: TrainingRecord, epochs_done: int,
                     lr_phases: list[dict], best_dice: float | None, best_epoch: int | None,
                     world_size: int) -> dict:
    """The model file's `training` dictionary."""
    main = record.sources[0]
    return {
        "dataset": " + ".join(source.name for source in record.sources),
        "synthetic": all(record.synthetic),
        "train_cases": sum(len(cases) for cases in record.train_cases),
        "val_cases": len(record.val_cases),
        "val_case_ids": [case.id for case in record.val_cases],
        "val_dataset": main.name,
        "trained_on": record.trained_on(),
        "initialised_from": record.initialised_from,
        "epochs": epochs_done, "epochs_planned": config.epochs,
        "iterations_per_epoch": config.iterations_per_epoch,
        "batch_size": config.batch_size, "world_size": world_size,
        "optimizer": config.optimizer, "lr": config.base_lr,
        "lr_schedule": lr_schedule_summary(lr_phases, epochs_done), "labels": config.labels,
        "augmentation": asdict(config.augmentation),
        "domain_randomisation": asdict(config.randomisation),
        "seed": config.seed,
        "weights_dtype": "bfloat16" if config.weights_bf16 else "float32",
        "best_val_dice": best_dice, "best_epoch": best_epoch,
        "val_dice_grid": f"model grid ({', '.join(f'{s:g}' for s in config.spacing_zyx)}"
                         " mm, z, y, x)",
        "date": date.today().isoformat(), "software": f"AttentionUNetSegment {__version__}",
    }


def build_model_spec(config: TrainConfig, record: TrainingRecord, network_args: dict,
                     labels: list, intensity, epochs_done: int, lr_phases: list[dict],
                     best_dice: float | None, best_epoch: int | None, world_size: int):
    """The ModelSpec written with the weights after `epochs_done` epochs."""
    from ..core.modelspec import FORMAT_VERSION, ModelSpec

    return ModelSpec(
        format_version=FORMAT_VERSION, architecture=config.arch,
        network_args=dict(network_args),
        labels=labels[:1] if config.context_classes else labels,
        context_labels=labels[1:] if config.context_classes else [],
        spacing_zyx=tuple(float(s) for s in config.spacing_zyx), intensity=intensity,
        patch_size_zyx=tuple(config.patch_size_zyx),
        training=training_summary(config, record, epochs_done, lr_phases, best_dice,
                                  best_epoch, world_size),
        description=_description(config, record, epochs_done, best_dice, best_epoch))
