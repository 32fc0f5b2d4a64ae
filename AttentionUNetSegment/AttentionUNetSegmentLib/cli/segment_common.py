"""What single-case and cohort `segment` share: the model, the options, and writing one case."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..core.errors import InputError


@dataclass
class Targets:
    """Every file one case writes (None: not asked for)."""

    labels: Path
    probabilities: Optional[Path] = None
    attention_dir: Optional[Path] = None
    summary: Optional[Path] = None


def check_folder(folder: str, option: str) -> Path:
    """A folder that exists or can be created; checked now, created only once results exist."""
    path = Path(folder).expanduser()
    if path.exists() and not path.is_dir():
        raise InputError(path, f"is a file; {option} needs a folder")
    if not path.exists() and not path.parent.is_dir():
        raise InputError(path, "its parent folder does not exist")
    return path


def load_segmentation_model(args):
    """(model, spec, path): --model, or the bundled model."""
    from ..files.modelfile import default_model_path, load_model

    model_path = Path(args.model) if args.model else default_model_path()
    if args.model is None and not model_path.exists():
        raise InputError(model_path, "bundled default model is missing; pass --model MODEL")
    model, spec = load_model(model_path)
    return model, spec, model_path


def segmentation_options(args, device: Optional[str] = None):
    from ..core.options import CleanupOptions, MapOptions, RegionOptions, SegmentationOptions, WindowOptions

    return SegmentationOptions(
        WindowOptions(overlap=args.overlap, batch_size=args.batch_size, device=device or args.device,
                      precision=args.precision),
        RegionOptions(point_ras=args.point, roi_size_mm=args.roi_size),
        CleanupOptions(keep_largest=not args.no_largest_component, fill_holes=not args.no_fill_holes),
        MapOptions(attention=bool(args.attention_dir), probabilities=bool(args.probabilities),
                   attention_grid=args.attention_grid, probability_grid=args.probability_grid),
    )


def case_summary(ct_path: Path, result, model_path: Path, spec, seconds: dict) -> dict:
    return {
        "input": str(ct_path),
        "labels": [label.to_dict() for label in result.labels],
        "volume_ml": result.volume_ml(),
        "seconds": seconds,  # read, preprocess, inference, restore, postprocess, write (+ total)
        "device": result.inference.device,
        "precision": result.inference.precision,
        "windows": result.inference.windows,
        "gates": sorted(result.attention),
        "attention_grid": "ct" if _on_ct(result) else "model",
        "model": {"path": str(model_path), "architecture": spec.architecture,
                  "description": spec.description, "training": spec.training},
    }


def _on_ct(result) -> bool:
    return all(image.GetSize() == result.labelmap.GetSize() for image in result.attention.values())


def write_outputs(result, targets: Targets, args, summary: Optional[dict] = None) -> float:
    """Write every output of one case, all or nothing; returns the seconds spent writing images.

    Every file goes to a temporary name first; the renames happen together at the end.
    """
    from ..files.segfile import write_labelmap_or_segmentation
    from ..files.attention import attention_file_name
    from ..files.writing import atomic_output, write_image

    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        write_labelmap_or_segmentation(
            result.labelmap, stack.enter_context(atomic_output(targets.labels)), result.labels)
        if targets.probabilities is not None and result.probabilities is not None:
            write_image(result.probabilities, stack.enter_context(atomic_output(targets.probabilities)))
        if result.attention and targets.attention_dir is not None:
            targets.attention_dir.mkdir(parents=True, exist_ok=True)
        for name, attention in result.attention.items():
            target = targets.attention_dir / attention_file_name(name, args.attention_format)
            # nrrd is the fast path (the Slicer module reads these back at once): no gzip.
            write_image(attention, stack.enter_context(atomic_output(target)),
                        compress=args.attention_format != "nrrd")
        seconds = time.perf_counter() - t0
        if targets.summary is not None and summary is not None:
            summary["seconds"]["write"] = seconds
            summary["seconds"]["total"] = sum(v for k, v in summary["seconds"].items() if k != "total")
            stack.enter_context(atomic_output(targets.summary)).write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return seconds


def warn_if_empty(ct_path: Path, volumes: dict) -> None:
    empty = [name for name, ml in volumes.items() if ml <= 0.0]
    if empty:  # not an error (the files are valid), but a radiologist must not miss it
        print(f"warning: {ct_path.name}: nothing was found for {', '.join(empty)}; the segment is empty "
              "(the model may not suit this scan)", file=sys.stderr)
