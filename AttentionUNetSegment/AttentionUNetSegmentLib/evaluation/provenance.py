"""Was a ground truth part of a model's training data? The model file of `train` lists every
training case's image and label files (`training.trained_on`, links resolved); a ground-truth
file whose resolved path, or whose image beside it, is among them was seen in training. This is
what lets a leave-one-out report prove that each real case was scored by a model that never saw
it."""

from __future__ import annotations

from pathlib import Path

from ..core.errors import PathLike


def training_files(training_summary: dict) -> set[str] | None:
    """Resolved image and label paths the model trained on; None when its file does not say
    (models trained before files were recorded, or not by `train`)."""
    sources = training_summary.get("trained_on")
    if not sources or any("label_files" not in source for source in sources):
        return None
    files: set[str] = set()
    for source in sources:
        files.update(source.get("label_files", []))
        files.update(source.get("image_files", []))
    return files


def seen_in_training(ground_truth: PathLike, training_summary: dict) -> bool | None:
    """True/False: `ground_truth` (a label file) was/was not one of the training files; None:
    the model file does not record them."""
    files = training_files(training_summary)
    if files is None:
        return None
    return str(Path(ground_truth).resolve()) in files


def provenance_lines(pairs: list[tuple[str, PathLike]], training_summary: dict,
                     model_name: str) -> list[str]:
    """Lines for `evaluate --model`: which of the evaluated (case, ground-truth file) pairs the
    model trained on."""
    if training_files(training_summary) is None:
        return [f"{model_name} does not record its training files: cannot tell which cases it saw"]
    seen = [case for case, gt in pairs if seen_in_training(gt, training_summary)]
    n_trained = sum(len(s.get("case_ids", [])) for s in training_summary["trained_on"])
    if not seen:
        return [f"none of the {len(pairs)} evaluated case(s) is among the {n_trained} case(s) "
                f"{model_name} trained on: all unseen"]
    return [f"{len(seen)} of the {len(pairs)} evaluated case(s) were in {model_name}'s training "
            f"data (not a held-out result): {', '.join(seen[:10])}{', ...' if len(seen) > 10 else ''}"]
