"""Figures drawn with matplotlib: PNG writing, the inferno colour table, the learning curve and
the segmentation figure (orientation, aspect, outlines), and the one-line hint without matplotlib."""

from __future__ import annotations

import builtins

import numpy as np
import pytest
import SimpleITK as sitk
from AttentionUNetSegmentLib.reports import figures

pytest.importorskip("matplotlib")


def read_png(path) -> np.ndarray:
    image = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(image)


def near(image: np.ndarray, color, tolerance: int = 40) -> np.ndarray:
    """Pixels within `tolerance` (per channel) of `color`: antialiased lines are not exact."""
    return np.all(np.abs(image[..., :3].astype(int) - np.array(color)) <= tolerance, axis=-1)


def test_write_png_round_trip_and_rejects_bad_input(tmp_path):
    rng = np.random.default_rng(0)
    for shape in ((7, 5, 3), (4, 9, 4), (6, 3)):
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        path = tmp_path / f"x{len(shape)}{shape[-1]}.png"
        figures.write_png(path, image)
        np.testing.assert_array_equal(read_png(path).reshape(image.shape), image)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x23.png", "x33.png", "x34.png"]   # no temp files
    with pytest.raises(ValueError, match="uint8"):
        figures.write_png(tmp_path / "a.png", np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        figures.write_png(tmp_path / "a.png", np.zeros((2, 2, 2), np.uint8))
    assert not (tmp_path / "a.png").exists()


def test_window_and_inferno_are_matplotlibs():
    from matplotlib import colormaps

    np.testing.assert_allclose(figures.window_ct(np.array([-160.0, 40.0, 240.0, -1000.0, 3000.0])),
                               [0.0, 0.5, 1.0, 0.0, 1.0])
    assert tuple(figures.inferno(np.array(0.0))) == (0, 0, 4)          # matplotlib's inferno(0)
    assert tuple(figures.inferno(np.array(1.0))) == (252, 255, 164)    # matplotlib's inferno(1)
    assert tuple(figures.inferno(np.array(128 / 255))) == (188, 55, 84)
    reference = np.asarray(colormaps["inferno"](0.3)[:3]) * 255
    assert np.abs(figures.inferno(np.array(0.3)).astype(float) - reference).max() <= 1.0
    brightness = figures.inferno(np.linspace(0, 1, 50)).astype(int).sum(axis=1)
    assert np.all(np.diff(brightness) >= 0)                             # perceptually ordered


def test_learning_curve_png(tmp_path):
    path = tmp_path / "curve.png"
    epochs = list(range(1, 21))
    loss = list(np.linspace(1.0, 0.2, 20))
    dice = [float("nan")] + list(np.linspace(0.1, 0.8, 19))          # no validation at epoch 1
    image = figures.learning_curve_png(path, epochs, {"loss": loss, "val Dice": dice}, title="training")
    np.testing.assert_array_equal(read_png(path), image)
    # matplotlib's first two default line colours (C0 blue, C1 orange) are both drawn.
    assert near(image, (31, 119, 180), 10).sum() > 200 and near(image, (255, 127, 14), 10).sum() > 200
    with pytest.raises(ValueError, match="has 3 values for 20 epochs"):
        figures.learning_curve_png(path, epochs, {"x": [1, 2, 3]})
    figures.learning_curve_png(tmp_path / "one.png", [1], {"loss": [0.5]})   # single epoch: still a plot
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.png", "one.png"]


def test_views_radiological_orientation():
    # Canonical LPS volume: x -> patient left, y -> posterior, z -> superior.
    volume = np.zeros((4, 5, 6))
    volume[3, 0, 5] = 1.0            # superior, anterior, patient left
    axial = figures.axial_view(volume, 3)
    assert axial[0, -1] == 1.0       # anterior at the top, patient left on the image right
    coronal = figures.coronal_view(volume, 0)
    assert coronal[0, -1] == 1.0     # superior at the top, patient left on the image right


def test_segmentation_panels_orientation_and_physical_size():
    # 20 slices of 4 mm (80 mm) x 40 x 40 voxels of 1 mm: the coronal panel is twice as tall as wide.
    shape, spacing = (20, 40, 40), (4.0, 1.0, 1.0)
    ct = np.full(shape, -1000.0)
    ct[:, 5:35, 5:35] = 40.0
    label = np.zeros(shape, np.uint8)
    label[2:6, 4:10, 28:34] = 1          # inferior, anterior, on the patient's left
    axial, coronal = figures.segmentation_panels(ct, spacing, label, {"gate2": ct > 0})
    assert (axial.name, coronal.name) == ("axial z=4", "coronal y=6")
    assert axial.size_mm == (40.0, 40.0) and coronal.size_mm == (40.0, 80.0)
    assert axial.edges == ("R", "L", "A", "P") and coronal.edges == ("R", "L", "S", "I")
    for panel, vertical in ((axial, "top"), (coronal, "bottom")):
        rows, cols = np.nonzero(panel.label)
        assert cols.min() > panel.label.shape[1] // 2                     # patient left: image right
        if vertical == "top":                                              # anterior up
            assert rows.max() < panel.label.shape[0] // 2
        else:                                                              # superior up: inferior low
            assert rows.min() > panel.label.shape[0] * 2 // 3
    assert axial.gates["gate2"].max() == 1.0 and axial.truth is None


def test_segmentation_figure_png_outlines_on_the_right_side(tmp_path):
    shape = (10, 32, 32)
    ct = np.zeros(shape)
    label = np.zeros(shape, np.uint8)
    label[3:6, 4:12, 20:28] = 1                               # anterior, patient left
    path = tmp_path / "figure.png"
    image = figures.segmentation_figure(path, ct, (2.0, 1.0, 1.0), label, {"gate2": np.full(shape, 0.5)},
                                        truth_zyx=np.roll(label, 3, axis=2))
    np.testing.assert_array_equal(read_png(path), image)
    cyan, magenta = near(image, figures.PREDICTION_COLOR), near(image, figures.TRUTH_COLOR)
    assert cyan.sum() > 50 and magenta.sum() > 50
    # The axial CT panel (top row, left column): 0 HU is grey 102 in the W400/L40 window; the
    # outline lies right of the panel's centre (patient left) and above it (anterior).
    quarter = (slice(0, image.shape[0] // 2), slice(0, image.shape[1] // 3))
    grey = near(image[quarter], (102, 102, 102), 2)
    grey_rows, grey_cols = np.nonzero(grey.sum(axis=1) > 50)[0], np.nonzero(grey.sum(axis=0) > 50)[0]
    assert grey_rows.size > 50 and grey_cols.size > 50
    top, bottom, left, right = grey_rows.min(), grey_rows.max(), grey_cols.min(), grey_cols.max()
    outline = cyan[quarter][top:bottom + 1, left:right + 1]
    outline[outline.shape[0] * 3 // 4:, :outline.shape[1] // 2] = False      # the legend's sample line
    rows, cols = np.nonzero(outline)
    assert cols.size and cols.min() > (right - left) / 2 and rows.max() < (bottom - top) / 2


def test_segmentation_figure_on_real_ct(real_ct_path, real_labels_path, tmp_path):
    ct_image = sitk.DICOMOrient(sitk.ReadImage(str(real_ct_path)), "LPS")
    labels = sitk.DICOMOrient(sitk.ReadImage(str(real_labels_path)), "LPS")
    ct = sitk.GetArrayFromImage(ct_image)
    pancreas = sitk.GetArrayFromImage(labels) == 7
    spacing = tuple(reversed(ct_image.GetSpacing()))
    centre = np.array([c.mean() for c in np.nonzero(pancreas)])
    grid = np.indices(ct.shape).astype(np.float32)
    blob = np.exp(-sum((g - c) ** 2 for g, c in zip(grid, centre)) / 50.0).astype(np.float32)
    image = figures.segmentation_figure(tmp_path / "real.png", ct, spacing, pancreas, {"gate3": blob})
    assert image.shape[0] > 300 and image.shape[1] > 450
    assert near(image, figures.PREDICTION_COLOR).sum() > 20
    assert read_png(tmp_path / "real.png").shape == image.shape


def test_segmentation_figure_empty_label_and_bad_shapes():
    ct = np.zeros((6, 8, 8))
    image = figures.segmentation_figure(None, ct, (2.0, 1.0, 1.0), np.zeros(ct.shape), {})
    assert image.dtype == np.uint8 and image.ndim == 3
    with pytest.raises(ValueError, match="expected the CT grid"):
        figures.segmentation_figure(None, ct, (1, 1, 1), np.zeros((6, 8, 7)), {})


def test_image_panels_png(tmp_path):
    panels = [np.full((40, 40, 4), 90, np.uint8), np.full((40, 40, 3), 200, np.uint8)]
    image = figures.image_panels_png(tmp_path / "p.png", panels, ["a", "b"], caption="c",
                                     colorbar_label="attention", transparent_below=0.1)
    np.testing.assert_array_equal(read_png(tmp_path / "p.png"), image)
    assert near(image, (90, 90, 90), 0).sum() > 100 and near(image, (200, 200, 200), 0).sum() > 100
    with pytest.raises(ValueError, match="2 panels but 1 titles"):
        figures.image_panels_png(tmp_path / "q.png", panels, ["a"])


def test_without_matplotlib_one_clear_line(monkeypatch, tmp_path):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.split(".")[0] == "matplotlib":
            raise ModuleNotFoundError("No module named 'matplotlib'", name="matplotlib")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(figures.FiguresUnavailable, match=r"matplotlib is not installed: pip install") as error:
        figures.learning_curve_png(tmp_path / "c.png", [1, 2], {"loss": [1.0, 0.5]})
    assert "\n" not in str(error.value)
    assert not list(tmp_path.iterdir())


def test_overlay_color_table_file_is_generated_from_inferno(repo_root):
    path = repo_root / "Resources" / "ColorTables" / "AttentionInferno.txt"
    assert path.read_text() == figures.attention_color_table_text(), \
        "regenerate it with reports.figures.attention_color_table_text()"
    rgba = figures.attention_color_table_rgba()
    assert rgba.shape == (256, 4) and rgba.dtype == np.uint8
    np.testing.assert_array_equal(rgba[:, :3], figures.inferno_table())
    assert rgba[0, 3] == 0 and rgba[255, 3] == 255
    # The alpha ramp ends where the Slicer overlays' display threshold begins.
    opaque_from = int(np.argmax(rgba[:, 3] == 255))
    assert opaque_from == round(figures.TRANSPARENT_FRACTION * 255)
