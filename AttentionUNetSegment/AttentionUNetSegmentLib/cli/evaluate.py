"""`attention-unet-segment evaluate`: score predicted labelmaps against the truth (files or
folders), print a table and a summary, and optionally write the per-case CSV."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.labels import LABELS_SYNTAX
from ..evaluation.evaluate import evaluate, format_header, format_row, format_summary
from .argtypes import deprecated, label_values


def register_cli(subparsers) -> None:
    """Add the `evaluate` sub-command."""
    p = subparsers.add_parser(
        "evaluate",
        help="score predictions against ground truth (Dice, HD95, ASSD, precision, recall, volumes)",
        description="Compare predicted labelmaps with ground truth: Dice, 95th-percentile Hausdorff "
        "distance and average symmetric surface distance in mm (physical voxel spacing), precision, "
        "recall and volumes in mL. PRED and TRUTH are files or folders; folders are matched by case name "
        f"(Decathlon/nnU-Net: labelsTr/case.nii.gz <-> case.nii.gz, case.seg.nrrd or case_0000.nii.gz). "
        f"LABELS: {LABELS_SYNTAX}; the values of one structure (several are merged).",
    )
    p.add_argument("pred", metavar="PRED", help="prediction labelmap (.nii.gz, .nrrd, .mha, .seg.nrrd) or folder")
    p.add_argument("gt", metavar="TRUTH", help="ground-truth labelmap or folder (or a Decathlon root with labelsTr/)")
    p.add_argument("--pred-label", dest="label", type=label_values("--pred-label"), default=None,
                   metavar="LABELS", help="prediction label value(s) to evaluate (default: the 'Pancreas' "
                   "segment of a .seg.nrrd, else 1)")
    p.add_argument("--truth-label", dest="gt_label", type=label_values("--truth-label"), default=None,
                   metavar="LABELS", help="ground-truth label value(s) (default: same as --pred-label; 7 for "
                   "TotalSegmentator's pancreas, 1,2 for Decathlon Task07 pancreas + tumour)")
    p.add_argument("-o", "--output", dest="csv", metavar="FILE.csv", help="write per-case metrics to this CSV file")
    deprecated(p, "--label", "--pred-label", dest="label", type=label_values("--label"))
    deprecated(p, "--gt-label", "--truth-label", dest="gt_label", type=label_values("--gt-label"))
    deprecated(p, "--csv", "-o/--output", dest="csv")
    p.add_argument("--model", metavar="MODEL", help="the model (file or folder) that made the "
                   "predictions: say which evaluated cases it trained on (leave-one-out proof; "
                   "needs a model file from this version's train)")
    p.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    """Print a per-case table as cases finish, then the summary; InputError propagates."""
    from ..files.modelfile import read_model_spec

    # Read first: a bad --model is one line before any output, not after the table.
    model_spec = read_model_spec(args.model) if args.model else None
    printed = []

    def show(row: dict) -> None:
        if not printed:   # header with the first row: an input error prints nothing but itself
            print(format_header())
            printed.append(True)
        print(format_row(row), flush=True)

    _, summary = evaluate(args.pred, args.gt, label=args.label, gt_label=args.gt_label,
                             csv_path=args.csv, on_case=show)
    print()
    print("\n".join(format_summary(summary)))
    for role, files in (("prediction(s) without ground truth", summary["unmatched_pred"]),
                        ("ground truth file(s) without prediction", summary["unmatched_gt"])):
        if files:
            shown = ", ".join(Path(f).name for f in files[:10]) + (", ..." if len(files) > 10 else "")
            print(f"warning: {len(files)} {role}, not evaluated: {shown}", file=sys.stderr)
    for note in summary["notes"]:
        print(f"warning: {note}", file=sys.stderr)
    if model_spec is not None:
        _print_provenance(args, model_spec)
    if args.csv:
        print(f"wrote {args.csv}")
    return 0


def _print_provenance(args: argparse.Namespace, spec) -> None:
    """Which evaluated cases the model saw in training (evaluation.provenance)."""
    from ..evaluation.evaluate import match_cases
    from ..evaluation.provenance import provenance_lines

    pairs = [(pair.case, pair.gt) for pair in match_cases(args.pred, args.gt).pairs]
    for line in provenance_lines(pairs, spec.training, Path(args.model).name):
        print(line)
