"""`attention-unet-segment evaluate-clicks`: the simulated user on one CT (Dice and HD95 after
each click, beside the automatic model and the single-click cube) as a CSV and a figure."""

from __future__ import annotations

import argparse
import sys

from ..core.labels import LABELS_SYNTAX
from ..core.options import DEVICES
from .argtypes import label_values, whole_number


def register_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate-clicks",
        help="Dice after each click of a simulated user, beside the automatic model and the one-click cube",
        description="Score a click-conditioned model the way the interactive-segmentation literature does, "
        "with a protocol fixed so that figures compare: click 1 at the interior point of the truth farthest "
        "from its border (mm, on the truth's grid); click k+1 at the interior point, farthest from its "
        "border, of the largest connected error region of result k (missed: an include click; extra: an "
        "exclude click); Dice (and HD95) on the truth's grid after every click. Baselines: the automatic "
        f"model, and the automatic model's cube around click 1. LABELS: {LABELS_SYNTAX}.")
    p.add_argument("ct", metavar="CT", help="the CT (.nii/.nii.gz, .nrrd, .mha, or a DICOM series folder)")
    p.add_argument("truth", metavar="TRUTH", help="its ground-truth labelmap (any grid; scored on it)")
    p.add_argument("--truth-label", type=label_values("--truth-label"), default=None, metavar="LABELS",
                   help="the truth's label value(s) of the structure (default: the 'Pancreas' segment of a "
                   ".seg.nrrd, else 1; 7 for TotalSegmentator's pancreas)")
    p.add_argument("--clicks", type=whole_number(1), default=10, help="number of clicks (default: 10)")
    p.add_argument("--model", metavar="MODEL", help="click-conditioned model (default: the bundled one)")
    p.add_argument("--automatic-model", metavar="MODEL",
                   help="the baselines' model without click channels (default: the bundled one)")
    p.add_argument("--no-baselines", action="store_true", help="score the clicks only")
    p.add_argument("--hd95", action="store_true", help="also the 95th-percentile Hausdorff distance (slower)")
    p.add_argument("--device", choices=DEVICES, default="auto", help="where the networks run (default: auto)")
    p.add_argument("-o", "--output", required=True, metavar="FILE.csv",
                   help="per-click CSV (case, method, click, kind, R, A, S, dice, hd95_mm, predicted_ml, seconds)")
    p.add_argument("--figure", metavar="FILE.png", help="Dice-versus-clicks figure (matplotlib)")
    p.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    from ..files.writing import check_output_path
    from ..reports.clicks import dice_figure, evaluate_clicks, write_csv
    from ..reports.figures import FiguresUnavailable

    csv_path = check_output_path(args.output, inputs=[args.ct, args.truth], extensions=(".csv",))
    figure = None if args.figure is None else check_output_path(args.figure, inputs=[args.ct], extensions=(".png",))

    def show(score) -> None:
        hd = "" if score.hd95_mm is None else f"  HD95 {score.hd95_mm:6.1f} mm"
        print(f"click {score.click:2d} {'include' if score.include else 'exclude'}  Dice {score.dice:.3f}{hd}  "
              f"{score.predicted_ml:7.1f} mL  {score.seconds:.2f} s", flush=True)

    evaluation = evaluate_clicks(args.ct, args.truth, args.truth_label, args.clicks, args.model,
                                 args.automatic_model, not args.no_baselines, args.device, args.hd95, show)
    for name, score in evaluation.baselines.items():
        print(f"baseline {name:9s}  Dice {score['dice']:.3f}  {score['predicted_ml']:7.1f} mL")
    write_csv([evaluation], csv_path)
    if figure is not None:
        try:
            dice_figure([evaluation], figure, title=f"{evaluation.case}: Dice after each click")
        except FiguresUnavailable as missing:
            print(f"warning: no figure ({missing})", file=sys.stderr)
    return 0
