"""Figures drawn with matplotlib: the segmentation + attention figure of `demo`, `train`'s learning
curve, a row of image panels with a colour bar, and the attention colour table Slicer reads.

matplotlib is an optional extra (``pip install "AttentionUNetSegment[figures]"``; `make demo`
installs it). It is imported inside the functions, through the object-oriented API and the Agg
canvas (no pyplot, no global backend switch), so importing this module never needs it and a
headless machine never needs a display. Without it, each drawing function raises
`FiguresUnavailable` with that one-line hint.

Volumes are numpy `(z, y, x)` arrays with `spacing_zyx` in mm, in canonical LPS orientation
(array x grows toward the patient's Left, y toward Posterior, z toward Superior: what
`geometry.to_canonical` returns). Slices are shown in the radiological convention: patient left
on the image right, anterior up on axial slices and superior up on coronal ones, each panel
drawn in millimetres so pixels are square whatever the voxel spacing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import numpy as np

from ..core.errors import PathLike
from ..files.writing import atomic_output

Color = tuple[int, int, int]

PREDICTION_COLOR: Color = (0, 230, 255)     # cyan: visible on grey CT and on inferno alike
TRUTH_COLOR: Color = (255, 60, 200)         # magenta: tells apart from cyan, also for red-green blindness
#: The overlay colour table's alpha ramps 0 -> 255 over this lowest part of 0..1, for renderers
#: that use table alpha (Slicer's slice views also threshold the overlays at this value).
TRANSPARENT_FRACTION = 0.1
INSTALL_HINT = "matplotlib is not installed: pip install \"AttentionUNetSegment[figures]\" (make demo does)"
DPI = 100


class FiguresUnavailable(RuntimeError):
    """matplotlib is missing: the figure is skipped, everything else still works."""


def _matplotlib():
    try:
        import matplotlib
    except ModuleNotFoundError:
        raise FiguresUnavailable(INSTALL_HINT) from None
    return matplotlib


def new_figure(width_in: float, height_in: float, facecolor: str = "white"):
    """A matplotlib Figure on an Agg canvas (no pyplot state, no display needed)."""
    _matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_in, height_in), dpi=DPI, facecolor=facecolor, constrained_layout=True)
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure, path: Optional[PathLike]) -> np.ndarray:
    """Render `figure`; write it to `path` as PNG (atomically) unless None. -> (H, W, 3) uint8."""
    figure.canvas.draw()
    image = np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
    if path is not None:
        write_png(path, image)
    return image


def write_png(path: PathLike, image: np.ndarray) -> None:
    """Write a uint8 (H, W), (H, W, 3) or (H, W, 4) image as PNG through SimpleITK, atomically.

    Through `files.writing.atomic_output`: a reader never sees a half-written figure.
    """
    import SimpleITK as sitk

    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"PNG images must be uint8; got {image.dtype}")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))) or 0 in image.shape[:2]:
        raise ValueError(f"expected (H, W), (H, W, 3) or (H, W, 4) with H, W > 0; got {image.shape}")
    itk_image = sitk.GetImageFromArray(np.ascontiguousarray(image), isVector=image.ndim == 3)
    with atomic_output(path) as temporary:
        sitk.WriteImage(itk_image, str(temporary))


def _rgb(color: Sequence[int]) -> tuple[float, float, float]:
    return tuple(c / 255.0 for c in color[:3])  # type: ignore[return-value]


# ------------------------------------------------------------------------ colour table


def inferno_table() -> np.ndarray:
    """matplotlib's inferno, its 256 entries rounded to 8 bits: (256, 3) uint8."""
    _matplotlib()
    from matplotlib import colormaps

    return np.rint(colormaps["inferno"](np.linspace(0.0, 1.0, 256))[:, :3] * 255.0).astype(np.uint8)


def inferno(values: np.ndarray) -> np.ndarray:
    """Values 0..1 (clipped; NaN -> 0) to (..., 3) uint8 through `inferno_table`."""
    values = np.nan_to_num(np.asarray(values, np.float64), nan=0.0)
    return inferno_table()[np.clip(np.rint(values * 255.0), 0, 255).astype(np.intp)]


def attention_color_table_rgba() -> np.ndarray:
    """(256, 4) uint8 RGBA: inferno, the lowest `TRANSPARENT_FRACTION` fading in from transparent."""
    ramp_entries = int(round(TRANSPARENT_FRACTION * 255))
    alpha = np.round(np.clip(np.arange(256) / ramp_entries, 0.0, 1.0) * 255).astype(np.uint8)
    return np.concatenate([inferno_table(), alpha[:, None]], axis=1)


def attention_color_table_text() -> str:
    """Resources/ColorTables/AttentionInferno.txt: Slicer's colour table text format
    (`index name R G B A`), read by the Slicer module and by `slicer.util.loadColorTable`."""
    lines = [
        "# Attention coefficients of AttentionUNetSegment (0..1): inferno (matplotlib, CC0),",
        f"# entries 0..{int(round(TRANSPARENT_FRACTION * 255))} fade in from transparent. Generated by",
        "# AttentionUNetSegmentLib.reports.figures.attention_color_table_text(); do not edit by hand.",
    ]
    for index, (r, g, b, a) in enumerate(attention_color_table_rgba()):
        lines.append(f"{index} attention{index / 255:.3f} {r} {g} {b} {a}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------ learning curve


def learning_curve_png(path: PathLike, epochs: Sequence[float], series: Mapping[str, Sequence[float]],
                       title: str = "", xlabel: str = "epoch", ylabel: str = "") -> np.ndarray:
    """Line plot of each series against `epochs` (train's learning curve); see line_plot_png."""
    return line_plot_png(path, epochs, series, title=title, xlabel=xlabel, ylabel=ylabel, x_unit="epochs")


def line_plot_png(path: PathLike, x: Sequence[float], series: Mapping[str, Sequence[float]],
                  styles: Optional[Mapping[str, Mapping]] = None, title: str = "", xlabel: str = "",
                  ylabel: str = "", x_unit: str = "points") -> np.ndarray:
    """Line plot of each series against `x`, written to `path` as PNG (atomically).

    NaN values (epochs without validation) are skipped and the measured points joined, so a
    series sampled every few epochs is still a line. `styles[name]` may give "linestyle",
    "marker" and "color_of" (draw in the colour of another series, e.g. a baseline beside its
    case). `x_unit` names the x values in the error for a series of the wrong length. Returns the
    (H, W, 3) uint8 image.
    """
    x = np.asarray(x, np.float64)
    values = {name: np.asarray(v, np.float64) for name, v in series.items()}
    for name, v in values.items():
        if v.shape != x.shape:
            raise ValueError(f"series {name!r} has {v.size} values for {x.size} {x_unit}")
    styles = styles or {}
    figure = new_figure(6.4, 4.0)
    axes = figure.add_subplot()
    colours: dict[str, object] = {}
    for name, v in values.items():
        style = dict(styles.get(name, {}))
        measured = np.isfinite(v)
        colour = colours.get(style.pop("color_of", None))
        line, = axes.plot(x[measured], v[measured], linewidth=2, label=name, color=colour,
                          linestyle=style.get("linestyle", "-"), markersize=3,
                          marker=style.get("marker", "o" if measured.sum() <= 40 else None))
        colours[name] = line.get_color()
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(True, color="0.88")
    if np.all(np.mod(x, 1) == 0):
        axes.xaxis.get_major_locator().set_params(integer=True)
    if values:
        axes.legend(loc="best", fontsize="small")
    return save_figure(figure, path)


# ------------------------------------------------------------------- segmentation figure


def window_ct(array: np.ndarray, level: float = 40.0, width: float = 400.0) -> np.ndarray:
    """CT values in HU mapped linearly to 0..1 (float32) over [level - width/2, level + width/2].

    The default is the usual abdominal soft-tissue window (W 400, L 40).
    """
    low = level - width / 2.0
    return np.clip((np.asarray(array, np.float32) - low) / float(width), 0.0, 1.0)


def axial_view(volume_zyx: np.ndarray, z: int) -> np.ndarray:
    """Axial slice z of a canonical-LPS volume, as displayed: anterior up, patient left on the right.

    In LPS arrays y grows toward posterior (down the screen) and x toward the patient's left
    (right of the screen), so the radiological view is the slice itself: rows y, columns x.
    """
    return volume_zyx[z]


def coronal_view(volume_zyx: np.ndarray, y: int) -> np.ndarray:
    """Coronal slice y of a canonical-LPS volume, as displayed: superior up, patient left on the right.

    z grows toward superior, so rows are flipped to put the head at the top; columns are x.
    """
    return volume_zyx[::-1, y, :]


def slice_centre(label_zyx: np.ndarray) -> tuple[int, int, int]:
    """(z, y, x) voxel index of the centroid of the non-zero voxels; the volume centre if none."""
    label = np.asarray(label_zyx) != 0
    if label.any():
        return tuple(int(round(float(c.mean()))) for c in np.nonzero(label))  # type: ignore[return-value]
    return tuple(n // 2 for n in label.shape)  # type: ignore[return-value]


@dataclass
class Panel:
    """One displayed slice: arrays as shown (row 0 on top) and its size in mm (width, height)."""

    name: str
    edges: tuple[str, str, str, str]          # orientation letters: left, right, top, bottom
    ct: np.ndarray                            # 0..1 after the CT window
    label: np.ndarray                         # bool
    truth: Optional[np.ndarray]               # bool, or None without ground truth
    gates: dict[str, np.ndarray]              # 0..1 attention per gate
    size_mm: tuple[float, float]

    def extent(self) -> tuple[float, float, float, float]:
        """imshow extent in mm with row 0 at the top: (left, right, bottom, top)."""
        return 0.0, self.size_mm[0], self.size_mm[1], 0.0


def _check_grid(ct_zyx: np.ndarray, volumes: Mapping[str, Optional[np.ndarray]]) -> None:
    if ct_zyx.ndim != 3:
        raise ValueError(f"ct_zyx must be a 3D (z, y, x) array; got shape {ct_zyx.shape}")
    for name, volume in volumes.items():
        if volume is not None and np.shape(volume) != ct_zyx.shape:
            raise ValueError(f"{name} has shape {np.shape(volume)}; expected the CT grid {ct_zyx.shape}")


def segmentation_panels(ct_zyx: np.ndarray, spacing_zyx: Sequence[float], label_zyx: np.ndarray,
                        attention: Mapping[str, np.ndarray], truth_zyx: Optional[np.ndarray] = None,
                        level: float = 40.0, width: float = 400.0) -> list[Panel]:
    """The axial and the coronal panel through the centroid of `label_zyx`, as displayed."""
    ct_zyx = np.asarray(ct_zyx)
    _check_grid(ct_zyx, {"label_zyx": label_zyx, "truth_zyx": truth_zyx,
                         **{f"attention[{k!r}]": v for k, v in attention.items()}})
    sz, sy, sx = (float(s) for s in spacing_zyx)
    centre = slice_centre(label_zyx)
    label = np.asarray(label_zyx) != 0
    truth = None if truth_zyx is None else np.asarray(truth_zyx) != 0
    gates = {k: np.clip(np.nan_to_num(np.asarray(v, np.float32)), 0.0, 1.0) for k, v in attention.items()}
    windowed = window_ct(ct_zyx, level, width)
    panels = []
    for name, view, index, (row_mm, n_rows), edges in (
            (f"axial z={centre[0]}", axial_view, centre[0], (sy, ct_zyx.shape[1]), ("R", "L", "A", "P")),
            (f"coronal y={centre[1]}", coronal_view, centre[1], (sz, ct_zyx.shape[0]), ("R", "L", "S", "I"))):
        panels.append(Panel(name, edges, view(windowed, index), view(label, index),
                            None if truth is None else view(truth, index),
                            {k: view(v, index) for k, v in gates.items()},
                            (ct_zyx.shape[2] * sx, n_rows * row_mm)))
    return panels


def _outline(axes, panel: Panel, mask: np.ndarray, color: Color) -> None:
    """The 0.5 iso-line of a mask, at the voxel centres in mm (smooth, not stair steps)."""
    if not mask.any() or mask.all():
        return
    rows, cols = mask.shape
    x = (np.arange(cols) + 0.5) * panel.size_mm[0] / cols
    y = (np.arange(rows) + 0.5) * panel.size_mm[1] / rows
    axes.contour(x, y, mask.astype(np.float32), levels=[0.5], colors=[_rgb(color)], linewidths=1.5)


def _draw_panel(axes, panel: Panel, gate: Optional[str]) -> None:
    axes.imshow(panel.ct, cmap="gray", vmin=0.0, vmax=1.0, extent=panel.extent(), interpolation="bilinear")
    if gate is not None:
        axes.imshow(panel.gates[gate], cmap="inferno", vmin=0.0, vmax=1.0, alpha=0.65,
                    extent=panel.extent(), interpolation="bilinear")
    elif panel.truth is not None:
        _outline(axes, panel, panel.truth, TRUTH_COLOR)
    _outline(axes, panel, panel.label, PREDICTION_COLOR)
    w, h = panel.size_mm
    style = {"color": "0.85", "fontsize": 9, "fontweight": "bold", "ha": "center", "va": "center"}
    for letter, x, y in zip(panel.edges, (0.03 * w, 0.97 * w, w / 2, w / 2), (h / 2, h / 2, 0.04 * h, 0.96 * h)):
        if gate is None:
            axes.text(x, y, letter, **style)
    axes.set_xlim(0, w)
    axes.set_ylim(h, 0)
    axes.set_aspect("equal")
    axes.set_xticks([])
    axes.set_yticks([])


def segmentation_figure(path: Optional[PathLike], ct_zyx: np.ndarray, spacing_zyx: Sequence[float],
                        label_zyx: np.ndarray, attention: Mapping[str, np.ndarray],
                        truth_zyx: Optional[np.ndarray] = None, title: Optional[str] = None,
                        level: float = 40.0, width: float = 400.0) -> np.ndarray:
    """CT + segmentation outline and each attention gate's map, axial and coronal; PNG at `path`.

    Rows: the axial and the coronal slice through the centroid of the segmentation (the volume
    centre if empty). Columns: the CT (W `width` / L `level`) with the segmentation outline
    (cyan) and, if given, the ground-truth outline (magenta); then one column per gate, its map
    (0..1) in inferno over the CT with the segmentation outline and a shared colour bar. The
    title defaults to the Dice against `truth_zyx` when given. Returns the (H, W, 3) uint8
    image; `path=None` only renders it.
    """
    from ..evaluation.metrics import dice

    panels = segmentation_panels(ct_zyx, spacing_zyx, label_zyx, attention, truth_zyx, level, width)
    gates = list(attention)
    columns = 1 + len(gates)
    aspect = max(p.size_mm[1] / p.size_mm[0] for p in panels)
    figure = new_figure(2.8 * columns + (0.8 if gates else 0.0), 2.8 * (1 + aspect) + 0.6, facecolor="black")
    grid = figure.subplots(2, columns, squeeze=False)
    for row, panel in enumerate(panels):
        for column, gate in enumerate([None, *gates]):
            axes = grid[row, column]
            _draw_panel(axes, panel, gate)
            gate_max = float(np.nanmax(attention[gate])) if gate is not None and np.size(attention[gate]) else 0.0
            axes.set_title(panel.name if gate is None else f"{gate} max {gate_max:.2f}", color="white", fontsize=9)
    if gates:
        _matplotlib()
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        bar = figure.colorbar(ScalarMappable(Normalize(0.0, 1.0), "inferno"), ax=grid[:, 1:].ravel().tolist(),
                              shrink=0.6, label="attention coefficient")
        bar.ax.yaxis.label.set_color("white")
        bar.ax.tick_params(colors="white")
    if title is None:
        title = "segmentation" + (f"  Dice {dice(label_zyx, truth_zyx):.2f}" if truth_zyx is not None else "")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=_rgb(PREDICTION_COLOR), label="segmentation")]
    if truth_zyx is not None:
        handles.append(Line2D([], [], color=_rgb(TRUTH_COLOR), label="truth"))
    figure.suptitle(title, color="white")
    grid[0, 0].legend(handles=handles, loc="lower left", facecolor="black", labelcolor="white", framealpha=0.6,
                      edgecolor="none", fontsize=8)
    return save_figure(figure, path)


# ------------------------------------------------------------------------ image panels


def image_panels_png(path: PathLike, panels: Sequence[np.ndarray], titles: Sequence[str],
                     caption: str = "", colorbar_label: Optional[str] = None,
                     transparent_below: float = 0.0) -> np.ndarray:
    """A row of ready-made RGB(A) images (e.g. Slicer slice views) with titles and a caption.

    With `colorbar_label` a horizontal inferno colour bar 0..1 goes underneath, greyed below
    `transparent_below` (where overlays are not drawn). Returns the (H, W, 3) uint8 image.
    """
    if len(panels) != len(titles):
        raise ValueError(f"{len(panels)} panels but {len(titles)} titles")
    figure = new_figure(3.2 * len(panels), 3.9 if colorbar_label else 3.5)
    grid = figure.subplots(1, len(panels), squeeze=False)[0]
    for axes, panel, title in zip(grid, panels, titles):
        axes.imshow(np.asarray(panel)[..., :3])
        axes.set_title(title, fontsize=9)
        axes.set_axis_off()
    if colorbar_label:
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        bar = figure.colorbar(ScalarMappable(Normalize(0.0, 1.0), "inferno"), ax=list(grid),
                              orientation="horizontal", shrink=0.5, aspect=40, label=colorbar_label)
        if transparent_below > 0:
            bar.ax.axvspan(0.0, transparent_below, color="0.25")
    if caption:
        figure.supxlabel(caption, fontsize=8)
    return save_figure(figure, path)
