"""`attention-unet-segment train-clicks`: train the click-conditioned Attention U-Net with a
simulated user, class-agnostically, on every labelled structure of the sources given
(training.interactive)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..core.errors import InputError
from ..core.options import DEVICES
from ..core.prompts import ENCODINGS, ClickEncoding
from ..training.interactive import InteractiveTrainConfig
from .argtypes import whole_number, xyz_to_zyx

_parse_xyz = xyz_to_zyx(int, lambda values: min(values) < 16 or any(v % 16 for v in values),
                        "X,Y,Z voxels, multiples of 16, such as 64,64,64")


def _source(text: str) -> tuple[str, float, tuple[int, ...]]:
    """DIR[:SHARE[:LABELS]] -> (folder, share, label values)."""
    folder, _, rest = text.partition(":")
    share_text, _, labels = rest.partition(":")
    try:
        share = float(share_text) if share_text else 1.0
        values = tuple(int(v) for v in labels.split(",") if v) if labels else ()
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected DIR[:SHARE[:LABELS]]; got {text!r}") from None
    if not folder or share <= 0:
        raise argparse.ArgumentTypeError(f"expected DIR[:SHARE[:LABELS]] with a positive share; got {text!r}")
    return folder, share, values


def _widths(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 5 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected 5 channel counts such as 8,16,32,64,128; got {text!r}")
    return values


def _xyz(zyx) -> str:
    return ",".join(str(v) for v in reversed(zyx))


def register_cli(subparsers) -> None:
    d = InteractiveTrainConfig()   # the defaults, written once there
    p = subparsers.add_parser(
        "train-clicks", help="train the click-conditioned model (class-agnostic, simulated user)",
        description="Train a click-conditioned Attention U-Net: 4 input channels (CT, include clicks, exclude "
        "clicks, previous mask); every labelled structure of every source is a target (the network learns to "
        "segment whatever the clicks point at), with a simulated user that clicks where the model's own "
        "previous prediction is most wrong. Sources are dataset folders (Decathlon, images/ + labels/, or "
        "<case>_ct / <case>_label pairs). Writes MODEL_DIR/model.pt (latest), best.pt (best validation), "
        "checkpoint.pt (--resume) and training_log.csv.")
    p.add_argument("-o", "--output", required=True, metavar="MODEL_DIR")
    p.add_argument("--source", action="append", type=_source, default=[], metavar="DIR[:SHARE[:HELD_OUT]]",
                   help="labelled CT (e.g. real scans with organ labels): every label value is a structure, but "
                   "HELD_OUT values (e.g. 7, TotalSegmentator's pancreas, while it is measured); repeatable")
    p.add_argument("--synthetic", action="append", type=_source, default=[], metavar="DIR[:SHARE[:FOCUS]]",
                   help="synthetic CT (phantom --all-organs): domain randomisation on; FOCUS label values get "
                   "--focus-share of its samples (default 1, the phantom pancreas); repeatable")
    p.add_argument("--focus-share", type=float, default=0.3, help="(default: 0.3)")
    p.add_argument("--val", metavar="DIR", help="validation CTs: the simulated-user protocol on --val-label")
    p.add_argument("--val-label", type=int, default=1, help="the validation target's label (default: 1)")
    p.add_argument("--steps", type=whole_number(1), default=d.steps, help=f"optimisation steps planned (default: {d.steps})")
    p.add_argument("--stop-after", type=whole_number(1), help="end this run at this step (resume later)")
    p.add_argument("--patch", type=_parse_xyz, default=d.patch_size_zyx,
                   help=f"training patch X,Y,Z (default: {_xyz(d.patch_size_zyx)})")
    p.add_argument("--window", type=_parse_xyz, default=d.window_zyx,
                   help=f"inference window X,Y,Z recorded in the model file (default: {_xyz(d.window_zyx)})")
    p.add_argument("--widths", type=_widths, default=d.widths,
                   help=f"channels per level (default: {','.join(map(str, d.widths))}, half the paper's; "
                   "16,32,64,128,256 on a GPU)")
    p.add_argument("--encoding", choices=ENCODINGS, default=d.encoding.kind,
                   help=f"click encoding (default: {d.encoding.kind})")
    p.add_argument("--radius", type=float, default=d.encoding.radius_voxels,
                   help=f"click radius in voxels (default: {d.encoding.radius_voxels:g})")
    p.add_argument("--init-from", metavar="MODEL", default="bundled",
                   help="start from this model's matching weights: a file, 'bundled' (the bundled automatic "
                   "model, the default) or 'none'")
    p.add_argument("--lr", type=float, default=d.lr, help=f"AdamW learning rate (default: {d.lr:g})")
    p.add_argument("--val-every", type=whole_number(1), default=d.val_every, help=f"(default: {d.val_every} steps)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--threads", type=whole_number(1), help="CPU threads (default: torch's)")
    p.add_argument("--cache", metavar="DIR", help="keep the preprocessed cases here (.npy)")
    p.add_argument("--resume", action="store_true", help="continue MODEL_DIR/checkpoint.pt")
    p.set_defaults(func=run_cli)


def _init_from(text: str):
    from ..files.resources import default_model_path

    if text == "none":
        return None
    path = default_model_path() if text == "bundled" else Path(text)
    if not path.exists():
        raise InputError(path, "model to start from does not exist")
    return str(path)


def run_cli(args: argparse.Namespace) -> int:
    from ..core.devices import resolve_device
    from ..training.interactive import protocol_validator, train_interactive, validation_cases
    from ..training.interactive_data import StructureSource

    if not args.source and not args.synthetic:
        raise InputError(None, "give at least one --source or --synthetic dataset folder")
    if args.threads:
        torch.set_num_threads(args.threads)
    sources = [StructureSource.from_folder(f"source{i}", folder, share=share, held_out=frozenset(held))
               for i, (folder, share, held) in enumerate(args.source)]
    focus = {}
    for i, (folder, share, focus_values) in enumerate(args.synthetic):
        sources.append(StructureSource.from_folder(f"synthetic{i}", folder, share=share, randomise=True))
        for value in focus_values or (1,):
            focus[f"synthetic{i}"] = (value, args.focus_share)
    device = str(resolve_device(args.device))
    config = InteractiveTrainConfig(
        patch_size_zyx=args.patch, window_zyx=args.window, widths=args.widths, encoding=ClickEncoding(args.encoding, args.radius),
        focus=focus, steps=args.steps, lr=args.lr, init_from=_init_from(args.init_from), seed=args.seed,
        val_every=args.val_every, device=device)
    validate = None
    if args.val:
        validate = protocol_validator(validation_cases(args.val, args.val_label), config.val_clicks, device)
    train_interactive(config, sources, args.output, validate=validate, resume=args.resume,
                      report=lambda line: print(line, flush=True), cache_dir=args.cache, stop_after=args.stop_after)
    return 0
