"""`attention-unet-segment train`: the command line of training.trainer.train (train a 3D
Attention U-Net or its plain U-Net on CT/label pairs, resume, fine-tune, multi-GPU)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..core.errors import InputError
from ..core.labels import LABELS_SYNTAX
from ..core.network import ARCHITECTURES
from ..core.options import DEVICES
from ..service.contract import make_progress
from ..training.checkpoints import CHECKPOINT_FILE, read_checkpoint
from ..training.config import LEGACY_ARCH_NAMES, TrainConfig
from ..training.mixing import parse_extra_dataset
from ..training.trainer import train
from .argtypes import add_progress_argument, deprecated, xyz_to_zyx

# "160,160,96" (x, y, z, as the paper writes it) -> (96, 160, 160); "2" -> (2, 2, 2) mm.
_parse_xyz_ints = xyz_to_zyx(int, lambda values: min(values) < 1, "X,Y,Z voxels such as 160,160,96")


_parse_spacing = xyz_to_zyx(float, lambda values: min(values) <= 0, "MM or X,Y,Z in mm")


def _parse_ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers; got {text!r}")


def _architecture(text: str) -> str:
    """The network, named as model files name it; the old short names still work, with a warning."""
    if text in LEGACY_ARCH_NAMES:
        print(f"warning: --arch {text} is deprecated; use --arch {LEGACY_ARCH_NAMES[text]}", file=sys.stderr)
        return LEGACY_ARCH_NAMES[text]
    if text not in ARCHITECTURES:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(ARCHITECTURES)}; got {text!r}")
    return text


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """The `train` options. Defaults are None here so that --resume can tell what was given;
    the real defaults are TrainConfig's (shown in the help)."""
    d = TrainConfig()
    p.add_argument("dataset", metavar="DATASET_DIR",
                   help="Decathlon folder (dataset.json, imagesTr/, labelsTr/), images/ + "
                   "labels/ folders, or <case>_ct / <case>_label pairs (see docs)")
    p.add_argument("-o", "--output", required=True, metavar="MODEL_DIR",
                   help="model folder: model.pt (best), last.pt, checkpoint_last.pt, "
                   "training_log.csv, learning_curve.png")
    p.add_argument("--arch", type=_architecture, metavar="{" + ",".join(ARCHITECTURES) + "}",
                   help=f"the network, as model files name it (default: {d.arch})")
    p.add_argument("--epochs", type=int, help=f"(default: {d.epochs})")
    p.add_argument("--iterations-per-epoch", type=int,
                   help=f"batches per epoch and GPU (default: {d.iterations_per_epoch})")
    p.add_argument("--patch", type=_parse_xyz_ints, metavar="X,Y,Z",
                   help="patch in voxels, x,y,z like the paper, multiples of 16 "
                   f"(default: {','.join(map(str, d.patch_size_zyx[::-1]))})")
    p.add_argument("--spacing", type=_parse_spacing, metavar="MM",
                   help="model voxel size in mm, one value or X,Y,Z (default: 2)")
    p.add_argument("--batch-size", type=int, help=f"patches per step and GPU (default: "
                   f"{d.batch_size})")
    p.add_argument("--optimizer", choices=("adam", "sgd"), help=f"(default: {d.optimizer})")
    p.add_argument("--lr", type=float, help="learning rate (default: 1e-4 adam, 1e-2 sgd "
                   "with polynomial decay)")
    p.add_argument("--lr-schedule", choices=("auto", "poly", "constant"),
                   help="auto (default): constant for adam, polynomial decay to 0 for sgd")
    p.add_argument("--weight-decay", type=float, help="(default: 0 adam, 3e-5 sgd)")
    p.add_argument("--labels", dest="labels", metavar="LABELS",
                   help=f"which label values train which class: {LABELS_SYNTAX} (default: merge = every "
                   "label > 0 is pancreas, Task07's tumour merged; 7 = only value 7 is pancreas)")
    deprecated(p, "--label-map", "--labels", dest="labels")
    p.add_argument("--val-fraction", type=float,
                   help=f"share of cases held out for validation (default: {d.val_fraction})")
    p.add_argument("--val-cases", type=lambda t: tuple(t.split(",")), metavar="ID,ID",
                   help="explicit validation case ids (overrides --val-fraction)")
    p.add_argument("--val-every", type=int, help="validate every N epochs (default: 1)")
    p.add_argument("--seed", type=int, help=f"(default: {d.seed})")
    p.add_argument("--widths", type=_parse_ints, metavar="W1,...,W5",
                   help=f"channels per level (default: {','.join(map(str, d.widths))})")
    p.add_argument("--device", choices=DEVICES,
                   help="(default: auto = CUDA if present, else CPU)")
    p.add_argument("--workers", type=int, dest="num_workers",
                   help=f"data loader processes per GPU (default: {d.num_workers})")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="mixed precision (default: on with CUDA)")
    p.add_argument("--sync-batchnorm", action="store_true", default=None,
                   help="multi-GPU: BatchNorm statistics over all GPUs")
    p.add_argument("--cache", action="store_true", default=None,
                   help="keep preprocessed volumes as .npy under MODEL_DIR/cache (memory-mapped)")
    p.add_argument("--flip-axes", type=lambda t: tuple(a for a in t.split(",") if a),
                   metavar="AXES", help="flip augmentation axes among x,y,z (default: none; "
                   "the pancreas is not left-right symmetric)")
    p.add_argument("--no-augmentation", action="store_true", help="train on raw patches")
    p.add_argument("--domain-randomisation", dest="domain_randomisation",
                   action=argparse.BooleanOptionalAction, default=None,
                   help="SynthSeg-style random contrast curves, per-structure "
                   "intensity shifts, bias field, thick slices, blur and noise on every patch "
                   "(default: off; never at inference)")
    deprecated(p, "--domain-randomization", "--domain-randomisation", dest="domain_randomisation",
               nargs=0, const=True)
    deprecated(p, "--no-domain-randomization", "--no-domain-randomisation", dest="domain_randomisation",
               nargs=0, const=False)
    p.add_argument("--extra-dataset", action="append", metavar="DIR[:WEIGHT[:LABELS]]",
                   dest="extra_datasets", help="another dataset to train on (repeatable): "
                   "WEIGHT = share of the patches drawn from it (default: in proportion to its "
                   "cases), LABELS = its label map (default: --labels), e.g. real:0.3:7:1")
    p.add_argument("--context-classes", action="store_true", default=None,
                   help="train classes 2..K of --labels (liver, stomach, vessels...) as context "
                   "only: validation scores the pancreas and segment writes only the pancreas")
    p.add_argument("--init-from", metavar="MODEL.pt", help="start from this model file's "
                   "weights (fine-tuning; its network, widths, spacing and patch are taken over "
                   "unless given)")
    p.add_argument("--weights-bf16", action="store_true", default=None,
                   help="store model.pt and last.pt weights in bfloat16 (half the file size; "
                   "loaded back into float32; the resume checkpoint keeps float32)")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in MODEL_DIR (its settings; --epochs may "
                   "extend it)")
    p.add_argument("--overwrite", action="store_true",
                   help="start again even though MODEL_DIR/model.pt exists")
    add_progress_argument(p)


_ARG_FIELDS = ("arch", "epochs", "iterations_per_epoch", "batch_size", "optimizer", "lr",
               "lr_schedule", "weight_decay", "labels", "val_fraction", "val_cases", "val_every", "seed",
               "widths", "device", "num_workers", "amp", "sync_batchnorm", "cache", "weights_bf16",
               "context_classes")


def config_from_args(args: argparse.Namespace, base: TrainConfig | None = None) -> TrainConfig:
    """`base` (TrainConfig() or a resumed run's config) with the options given on the line."""
    config = TrainConfig.from_dict((base or TrainConfig()).to_dict())
    for name in _ARG_FIELDS:
        value = getattr(args, name, None)
        if value is not None:
            setattr(config, name, value)
    if getattr(args, "patch", None) is not None:
        config.patch_size_zyx = tuple(args.patch)
    if getattr(args, "spacing", None) is not None:
        config.spacing_zyx = tuple(args.spacing)
    if getattr(args, "flip_axes", None) is not None:
        unknown = set(args.flip_axes) - {"x", "y", "z"}
        if unknown:
            raise InputError(None, f"--flip-axes: unknown axis {sorted(unknown)[0]!r}; use x,y,z")
        config.augmentation.flip_axes = tuple(args.flip_axes)
    if getattr(args, "no_augmentation", False):
        config.augmentation.enabled = False
    if getattr(args, "domain_randomisation", None) is not None:
        config.randomisation.enabled = bool(args.domain_randomisation)
    if getattr(args, "extra_datasets", None):
        config.extra_datasets = tuple(parse_extra_dataset(text) for text in args.extra_datasets)
    if getattr(args, "init_from", None):
        _take_network_from(config, args)
    return config


def _take_network_from(config: TrainConfig, args: argparse.Namespace) -> None:
    """--init-from: the starting model's architecture, widths, spacing and patch, unless given
    (its patch, because a fine-tune is usually a short run where its sliding window is right)."""
    from ..files.modelfile import read_model_spec

    path = Path(args.init_from).expanduser().resolve()
    spec = read_model_spec(path)
    config.init_from = str(path)
    if args.arch is None and spec.architecture in ARCHITECTURES:
        config.arch = spec.architecture
    if args.widths is None and "widths" in spec.network_args:
        config.widths = tuple(int(w) for w in spec.network_args["widths"])
    if getattr(args, "spacing", None) is None:
        config.spacing_zyx = tuple(float(s) for s in spec.spacing_zyx)
    if getattr(args, "patch", None) is None:
        config.patch_size_zyx = tuple(int(p) for p in spec.patch_size_zyx)


def run_cli(args: argparse.Namespace) -> int:
    out = Path(args.output)
    base = None
    if args.resume:
        base = TrainConfig.from_dict(read_checkpoint(out / CHECKPOINT_FILE)["config"])
        if args.device is None:
            base.device = "auto"      # the machine may have changed since the interruption
    config = config_from_args(args, base)
    # bar: a bar and epoch lines for people; json: progress lines (service.contract) for programs.
    progress = True if args.progress == "bar" else make_progress(args.progress)
    result = train(config, args.dataset, out, resume=args.resume, progress=progress, overwrite=args.overwrite)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"model: {result.model_path}")
    return 0


def register_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a 3D (Attention) U-Net on CT/label pairs",
        description="Train on a Decathlon-layout dataset (e.g. Task07_Pancreas) or NIfTI "
        "image/label pairs (e.g. NIH Pancreas-CT), with the preprocessing used by segment. "
        "Multi-GPU: the same command under `torchrun --nproc-per-node N`. The output folder "
        "is a model that segment --model and the Slicer module load directly.")
    add_train_arguments(p)
    p.set_defaults(func=run_cli)
