
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from ..core.errors import InputError
from .argtypes import whole_number


def _parse_point(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected R,A,S in millimetres, e.g. 12.5,-30,100; got {text!r}")
    return values  # type: ignore[return-value]


def _parse_overlap(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"overlap must be in [0, 1); got {text}")
    return value


def add_segment_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "segment",
        help="segment the pancreas on a CT",
        description="Segment the pancreas on a CT and optionally write each attention gate's map. "
        "Every output lies exactly on the input CT's grid.",
    )
    p.add_argument("ct", metavar="CT", help="CT volume: .nii/.nii.gz, .nrrd, .mha/.mhd, or a DICOM series folder")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="labelmap (.nii.gz, .nii, .nrrd, .mha) or Slicer segmentation (.seg.nrrd)")
    p.add_argument("--attention-dir", metavar="DIR",
                   help="write one float32 volume (0..1) per attention gate here: attention_<gate>.<ext>")
    p.add_argument("--attention-format", choices=("nii.gz", "nrrd"), default="nii.gz",
                   help="file type of the attention maps (default: nii.gz; nrrd is uncompressed and faster)")
    p.add_argument("--probabilities", metavar="FILE",
                   help="write the pancreas probability (float32, 0..1) on the CT grid to FILE")
    p.add_argument("--model", metavar="MODEL",
                   help="model file (.pt) or model folder (containing model.pt); default: the bundled model")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto",
                   help="where the network runs (default: auto = CUDA GPU if present, else CPU)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                   help="arithmetic on the device (default: auto = bf16/fp16 autocast on CUDA, fp32 on CPU)")
    p.add_argument("--overlap", type=_parse_overlap, default=0.5,
                   help="fraction of each sliding window shared with its neighbour, 0..<1 (default: 0.5)")
    p.add_argument("--batch-size", type=whole_number(1), default=2, help="windows per forward pass (default: 2)")
    p.add_argument("--point", type=_parse_point, metavar="R,A,S",
                   help="click-to-segment: a RAS point in mm (as Slicer shows it) on the pancreas; "
                   "only the region around it is segmented and the component at the point is kept")
    p.add_argument("--roi-size", type=float, default=160.0, metavar="MM",
                   help="edge of the cube around --point that is segmented, in mm (default: 160)")
    p.add_argument("--no-largest-component", action="store_true",
                   help="keep every connected component, not only the largest")
    p.add_argument("--no-fill-holes", action="store_true", help="do not fill enclosed holes")
    p.add_argument("--progress", choices=("bar", "json", "none"), default="bar",
                   help="progress on stderr: a bar, JSON lines for programs, or nothing (default: bar)")
    p.add_argument("--summary-json", metavar="FILE",
                   help="write a JSON summary (volumes in mL, timings, device, gates) to FILE")
    p.set_defaults(func=run_segment)


def _planned_outputs(args, ct_path: Path) -> dict[str, Path]:
    """Every file `segment` will write, checked before any work is done."""
    from ..files.writing import check_output_path

    outputs = {"labels": check_output_path(args.output, inputs=[ct_path])}
    if args.probabilities:
        outputs["probabilities"] = check_output_path(args.probabilities, inputs=[ct_path])
    if args.summary_json:
        outputs["summary"] = check_output_path(args.summary_json, inputs=[ct_path], extensions=(".json",))
    if args.attention_dir:
        folder = Path(args.attention_dir)
        if folder.exists() and not folder.is_dir():
            raise InputError(folder, "is a file; --attention-dir needs a folder")
        # Checked now, created only once results exist: bad input must leave nothing behind.
        if not folder.exists() and not folder.parent.is_dir():
            raise InputError(folder, "its parent folder does not exist")
    names = [str(p.resolve()) for p in outputs.values()]
    if len(set(names)) != len(names):
        raise InputError(args.output, "two outputs would be written to the same file")
    return outputs


def run_segment(args) -> int:
    from ..core.devices import resolve_device, resolve_precision
    from ..core.pipeline import SegmentationOptions, segment_image
    from ..core.progress import make_progress
    from ..files.modelfile import default_model_path, load_model
    from ..files.reading import check_ct_like, read_ct
    from ..files.segfile import write_labelmap_or_segmentation
    from ..files.writing import atomic_output, write_image

    # Device problems are about the machine, not a file: report them before touching any file.
    resolve_precision(args.precision, resolve_device(args.device))
    ct_path = Path(args.ct)
    outputs = _planned_outputs(args, ct_path)
    image = read_ct(ct_path)
    for warning in check_ct_like(image, ct_path):
        print(f"warning: {warning}", file=sys.stderr)
    model_path = Path(args.model) if args.model else default_model_path()
    if args.model is None and not model_path.exists():
        raise InputError(model_path, "bundled default model is missing; pass --model MODEL")
    model, spec = load_model(model_path)

    options = SegmentationOptions(
        overlap=args.overlap, batch_size=args.batch_size, device=args.device, precision=args.precision,
        point_ras=args.point, roi_size_mm=args.roi_size,
        keep_largest=not args.no_largest_component, fill_holes=not args.no_fill_holes,
        attention=bool(args.attention_dir), probabilities=bool(args.probabilities),
    )
    try:
        result = segment_image(image, model, spec, options, progress=make_progress(args.progress))
    except InputError as error:
        if error.path is not None:
            raise
        raise InputError(ct_path, error.problem) from error  # name the file the problem is about

    volumes = result.volume_ml()
    summary = {
        "input": str(ct_path),
        "labels": [label.to_dict() for label in result.labels],
        "volume_ml": volumes,
        "seconds": result.seconds,
        "device": result.inference.device,
        "precision": result.inference.precision,
        "windows": result.inference.windows,
        "gates": sorted(result.attention),
        "model": {"path": str(model_path), "architecture": spec.architecture,
                  "description": spec.description, "training": spec.training},
    }

    # All or nothing: every file goes to a temporary name first; renames happen together at the end.
    with contextlib.ExitStack() as stack:
        write_labelmap_or_segmentation(
            result.labelmap, stack.enter_context(atomic_output(outputs["labels"])), result.labels)
        if "probabilities" in outputs:
            write_image(result.probabilities, stack.enter_context(atomic_output(outputs["probabilities"])))
        if result.attention:
            Path(args.attention_dir).mkdir(exist_ok=True)
        for name, attention in result.attention.items():
            target = Path(args.attention_dir) / f"attention_{name}.{args.attention_format}"
            # nrrd is the fast path (the Slicer module reads these back at once): no gzip.
            write_image(attention, stack.enter_context(atomic_output(target)),
                        compress=args.attention_format != "nrrd")
        if "summary" in outputs:
            stack.enter_context(atomic_output(outputs["summary"])).write_text(json.dumps(summary, indent=2))

    described = ", ".join(f"{name} {ml:.1f} mL" for name, ml in volumes.items())
    print(f"{described}; {result.seconds['total']:.1f} s on {result.inference.device} "
          f"({result.inference.precision}); wrote {outputs['labels']}", file=sys.stderr if args.progress == "json" else sys.stdout)
    empty = [name for name, ml in volumes.items() if ml <= 0.0]
    if empty:  # not an error (the files are valid), but a radiologist must not miss it
        print(f"warning: {ct_path.name}: nothing was found for {', '.join(empty)}; the segment is empty "
              "(the model may not suit this scan)", file=sys.stderr)
    return 0
