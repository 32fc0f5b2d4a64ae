"""`attention-unet-segment evaluate-clicks`: Dice (and HD95) after each click of the simulated
user on one CT, beside two baselines, as a CSV and a Dice-versus-clicks figure.

    CT + truth --evaluation.interactive.simulate_user--> the click-conditioned model, click by
      click through the service (the session the Slicer worker uses)
    baselines: the automatic model (no click) and today's single-click cube (the automatic
      model with click 1), each scored once on the truth's grid

The protocol (evaluation/clicks.py) is fixed so that everyone's figures compare.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from ..core.errors import InputError, PathLike
from ..core.options import Click, MapOptions, RegionOptions, SegmentationOptions, WindowOptions
from ..evaluation.clicks import first_click
from ..evaluation.interactive import ClickScore, index_to_ras, on_truth_grid, simulate_user
from ..evaluation.metrics import dice, hd95
from ..files.writing import atomic_output

BASELINES = ("automatic", "cube")


@dataclass
class ClickEvaluation:
    case: str
    scores: list[ClickScore]
    baselines: dict[str, dict] = field(default_factory=dict)  # name -> {"dice", "hd95_mm", "predicted_ml"}
    model: str = ""


def read_truth(path: PathLike, labels) -> sitk.Image:
    """The truth as a 0/1 uint8 image on its own grid (labels: evaluate's label syntax)."""
    from ..evaluation.evaluate import read_labelmap
    from ..evaluation.metrics import label_mask

    image, values, _notes = read_labelmap(path, labels)
    mask = label_mask(image, values, path)
    if not mask.any():
        raise InputError(path, f"has no voxel with label value {','.join(str(v) for v in values)}")
    truth = sitk.GetImageFromArray(mask.astype(np.uint8))
    truth.CopyInformation(image)
    return truth


def _score(labelmap: sitk.Image, truth: sitk.Image, with_hd95: bool) -> dict:
    predicted = on_truth_grid(labelmap, truth)
    truth_mask = sitk.GetArrayViewFromImage(truth) != 0
    spacing = tuple(reversed(truth.GetSpacing()))
    return {"dice": dice(predicted, truth_mask),
            "hd95_mm": hd95(predicted, truth_mask, spacing) if with_hd95 else None,
            "predicted_ml": float(np.count_nonzero(predicted)) * float(np.prod(truth.GetSpacing())) / 1000.0}


def _baselines(image: sitk.Image, truth: sitk.Image, automatic_model, window: WindowOptions,
               with_hd95: bool) -> dict[str, dict]:
    """The automatic model alone, and with the protocol's first click (the cube around it)."""
    from ..service.segmenter import segment_image

    truth_mask = sitk.GetArrayViewFromImage(truth) != 0
    click = Click(index_to_ras(truth, first_click(truth_mask, tuple(reversed(truth.GetSpacing()))).index_zyx))
    out = {}
    for name, region in (("automatic", RegionOptions()), ("cube", RegionOptions(clicks=(click,)))):
        options = SegmentationOptions(window=window, region=region, maps=MapOptions(attention=False))
        out[name] = _score(segment_image(image, automatic_model, options).labelmap, truth, with_hd95)
    return out


def evaluate_clicks(ct_path: PathLike, truth_path: PathLike, truth_labels=None, clicks: int = 10,
                    model_path: Optional[PathLike] = None, automatic_model_path: Optional[PathLike] = None,
                    baselines: bool = True, device: str = "auto", with_hd95: bool = False,
                    on_score: Optional[Callable[[ClickScore], None]] = None) -> ClickEvaluation:
    """The protocol on one CT with the click-conditioned model (the bundled one by default)."""
    from ..service.clicks import new_session
    from ..service.segmenter import load_segmentation_model, read_case

    image, _ = read_case(Path(ct_path))
    truth = read_truth(truth_path, truth_labels)
    model = load_segmentation_model(model_path, clicks=True)
    if not model.spec.interactive:
        raise InputError(model.path, "has no click channels: evaluate-clicks needs a click-conditioned model")
    window = WindowOptions(device=device)
    session = new_session(image, model, SegmentationOptions(window=window, maps=MapOptions(attention=False)))

    def answer(point, include):
        return session.add_click(point, include).labelmap

    scores = simulate_user(answer, truth, clicks, with_hd95=with_hd95, on_score=on_score)
    found = {}
    if baselines:
        automatic = load_segmentation_model(automatic_model_path, clicks=False)
        found = _baselines(image, truth, automatic, window, with_hd95)
    return ClickEvaluation(Path(ct_path).name, scores, found, str(model.path))


CSV_COLUMNS = ("case", "method", "click", "kind", "R", "A", "S", "dice", "hd95_mm", "predicted_ml", "seconds")


def csv_rows(evaluation: ClickEvaluation) -> list[dict]:
    rows = [{"case": evaluation.case, "method": "clicks", "click": s.click, "kind": "include" if s.include else "exclude",
             "R": s.point_ras[0], "A": s.point_ras[1], "S": s.point_ras[2], "dice": s.dice, "hd95_mm": s.hd95_mm,
             "predicted_ml": s.predicted_ml, "seconds": s.seconds} for s in evaluation.scores]
    for name, score in evaluation.baselines.items():
        rows.append({"case": evaluation.case, "method": name, "click": 0 if name == "automatic" else 1, **score})
    return rows


def write_csv(evaluations: Sequence[ClickEvaluation], path: PathLike) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for evaluation in evaluations:
        for row in csv_rows(evaluation):
            writer.writerow({k: "" if row.get(k) is None else
                             (f"{row[k]:.4f}" if isinstance(row[k], float) else row[k]) for k in CSV_COLUMNS})
    with atomic_output(Path(path)) as temporary:
        temporary.write_text(buffer.getvalue(), encoding="utf-8")


def dice_figure(evaluations: Sequence[ClickEvaluation], path: PathLike, title: str = "") -> None:
    """Dice after each click per case (lines), each baseline as a flat dashed line of its case's
    colour (matplotlib, reports.figures)."""
    from .figures import line_plot_png

    clicks = max(len(e.scores) for e in evaluations)
    series, styles = {}, {}
    for evaluation in evaluations:
        values = [s.dice for s in evaluation.scores] + [np.nan] * (clicks - len(evaluation.scores))
        series[evaluation.case] = values
        for name, score in evaluation.baselines.items():
            label = f"{evaluation.case}: {name}"
            series[label] = [score["dice"]] * clicks
            styles[label] = {"linestyle": "--" if name == "automatic" else ":", "marker": None,
                             "color_of": evaluation.case}
    line_plot_png(path, list(range(1, clicks + 1)), series, styles=styles,
                  title=title or "Dice after each click (simulated user)", xlabel="clicks", ylabel="Dice")
