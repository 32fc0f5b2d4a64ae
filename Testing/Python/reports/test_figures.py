"""PNG writer, colour map, font, plots and the segmentation figure (orientation, aspect)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from AttentionUNetSegmentLib.reports import figures


def read_png(path: Path) -> np.ndarray:
    """Minimal PNG decoder for 8-bit grey/RGB/RGBA with unfiltered rows; CRCs checked."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, chunks = 8, []
    while position < len(data):
        (length,) = struct.unpack(">I", data[position:position + 4])
        kind = data[position + 4:position + 8]
        body = data[position + 8:position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length:position + 12 + length])
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc, kind
        chunks.append((kind, body))
        position += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert depth == 8 and interlace == 0
    channels = {0: 1, 2: 3, 6: 4}[colour]
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    stride = width * channels
    rows = np.frombuffer(raw, np.uint8).reshape(height, stride + 1)
    assert np.all(rows[:, 0] == 0)        # write_png uses filter type 0 (none) on every row
    out = rows[:, 1:]
    return out.astype(np.uint8).reshape(height, width, channels)


def test_write_png_round_trip_rgb_rgba_grey(tmp_path):
    rng = np.random.default_rng(0)
    for shape in ((7, 5, 3), (4, 9, 4), (6, 3)):
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        path = tmp_path / f"x{len(shape)}{shape[-1]}.png"
        figures.write_png(path, image)
        decoded = read_png(path)
        np.testing.assert_array_equal(decoded.reshape(image.shape), image)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x23.png", "x33.png", "x34.png"]   # no temp files


def test_png_readable_by_simpleitk(tmp_path):
    image = np.zeros((10, 20, 3), np.uint8)
    image[2, 15] = (255, 128, 7)
    figures.write_png(tmp_path / "a.png", image)
    read = sitk.ReadImage(str(tmp_path / "a.png"))
    assert read.GetSize() == (20, 10) and read.GetNumberOfComponentsPerPixel() == 3
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read), image)


def test_write_png_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        figures.write_png(tmp_path / "a.png", np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        figures.write_png(tmp_path / "a.png", np.zeros((2, 2, 2), np.uint8))
    assert not list(tmp_path.iterdir())


def test_window_and_inferno_endpoints():
    np.testing.assert_allclose(figures.window_ct(np.array([-160.0, 40.0, 240.0, -1000.0, 3000.0])),
                               [0.0, 0.5, 1.0, 0.0, 1.0])
    assert tuple(figures.inferno(np.array(0.0))) == (0, 0, 4)          # matplotlib's inferno(0)
    assert tuple(figures.inferno(np.array(1.0))) == (252, 255, 164)    # matplotlib's inferno(1)
    assert tuple(figures.inferno(np.array(0.5))) == (188, 55, 84)      # matplotlib: (0.735, 0.216, 0.330)
    assert figures.inferno(np.zeros((4, 5))).shape == (4, 5, 3)
    brightness = figures.inferno(np.linspace(0, 1, 50)).astype(int).sum(axis=1)
    assert np.all(np.diff(brightness) >= 0)                             # perceptually ordered


def test_overlay_threshold_and_outline():
    ct = np.full((4, 4, 3), 100, np.uint8)
    values = np.zeros((4, 4))
    values[1, 1] = 1.0
    out = figures.overlay(ct, values, figures.inferno, alpha=0.5, threshold=0.1)
    assert tuple(out[0, 0]) == (100, 100, 100)
    assert tuple(out[1, 1]) == (176, 178, 132)                         # (100 + (252, 255, 164)) / 2
    mask = np.zeros((5, 5), bool)
    mask[1:4, 1:4] = True
    edges = figures.outline(mask)
    assert edges.sum() == 8 and not edges[2, 2]


def test_font_renders_supported_text_and_distinct_glyphs():
    image = np.zeros((20, 120, 3), np.uint8)
    figures.draw_text(image, 2, 2, "gate3 max 0.93", (255, 0, 0))
    assert image[..., 0].any() and not image[..., 1].any()
    assert figures.text_size("Dice 0.87", 2) == ((9 * 6 - 1) * 2, 9 * 2)
    bitmaps = {}
    for char, bitmap in figures.FONT.items():
        if char != " ":
            assert bitmap.any(), char
        key = bitmap.tobytes()
        assert key not in bitmaps, f"{char!r} looks like {bitmaps.get(key)!r}"
        bitmaps[key] = char
    for char in "axial z=42 Dice 0.87 coronal y ± %()[]:,-_/":
        assert char in figures.FONT
    # Clipped at the border, no error.
    figures.draw_text(image, 110, 15, "clipped", (0, 255, 0), scale=3)
    figures.draw_text(image, -50, -50, "gone", (0, 255, 0))


def test_montage_layout():
    panels = [np.full((10, 20, 3), 50, np.uint8), np.full((30, 8, 3), 100, np.uint8), np.full((5, 5, 3), 200, np.uint8)]
    image = figures.montage(panels, ["a", "b", "c"], columns=2, scale=1, pad=2)
    title_h = figures.LINE_HEIGHT + 2
    assert image.shape == (2 + (title_h + 30 + 2) + (title_h + 5 + 2), 2 + 20 + 2 + 8 + 2, 3)
    assert (image == 50).all(axis=2).sum() == 10 * 20
    with pytest.raises(ValueError):
        figures.montage(panels, ["a"])


def test_learning_curve_png(tmp_path):
    path = tmp_path / "curve.png"
    epochs = list(range(1, 21))
    loss = list(np.linspace(1.0, 0.2, 20))
    dice = [float("nan")] + list(np.linspace(0.1, 0.8, 19))          # no validation at epoch 1
    image = figures.learning_curve_png(path, epochs, {"loss": loss, "val Dice": dice}, title="training")
    decoded = read_png(path)
    np.testing.assert_array_equal(decoded, image)
    colours = {tuple(c) for c in decoded.reshape(-1, 3)}
    assert figures.PALETTE[0] in colours and figures.PALETTE[1] in colours
    with pytest.raises(ValueError, match="has 3 values for 20 epochs"):
        figures.learning_curve_png(path, epochs, {"x": [1, 2, 3]})
    figures.learning_curve_png(tmp_path / "one.png", [1], {"loss": [0.5]})   # single epoch: still a plot


def test_views_radiological_orientation():
    # Canonical LPS volume: x -> patient left, y -> posterior, z -> superior.
    volume = np.zeros((4, 5, 6))
    volume[3, 0, 5] = 1.0            # superior, anterior, patient left
    axial = figures.axial_view(volume, 3)
    assert axial[0, -1] == 1.0       # anterior at the top, patient left on the image right
    coronal = figures.coronal_view(volume, 0)
    assert coronal[0, -1] == 1.0     # superior at the top, patient left on the image right


def test_square_pixels_keep_physical_aspect():
    slice_2d = np.zeros((10, 40))    # 10 rows of 3 mm, 40 columns of 0.75 mm: 30 x 30 mm
    out = figures.square_pixels(slice_2d, (3.0, 0.75), 0.75)
    assert out.shape == (40, 40)
    labels = np.arange(6).reshape(2, 3)
    np.testing.assert_array_equal(figures.square_pixels(labels, (2.0, 1.0), 1.0, linear=False),
                                  [[0, 1, 2], [0, 1, 2], [3, 4, 5], [3, 4, 5]])


def test_segmentation_panels_orientation_and_aspect():
    # 20 slices of 4 mm (80 mm) x 40 x 40 voxels of 1 mm: the coronal panel is twice as tall as wide.
    shape, spacing = (20, 40, 40), (4.0, 1.0, 1.0)
    ct = np.full(shape, -1000.0)
    ct[:, 5:35, 5:35] = 40.0
    label = np.zeros(shape, np.uint8)
    label[2:6, 4:10, 28:34] = 1          # inferior, anterior, on the patient's left
    panels, titles, columns = figures.segmentation_panels(ct, spacing, label, {"gate2": ct > 0})
    assert columns == 2 and titles == ["axial z=4", "gate2 max 1.00", "coronal y=6", "gate2 max 1.00"]
    axial, coronal = panels[0], panels[2]
    assert axial.shape[0] == axial.shape[1]
    assert coronal.shape[0] == 2 * coronal.shape[1]
    for panel, vertical in ((axial, "top"), (coronal, "bottom")):
        rows, cols = np.nonzero(np.all(panel == figures.PREDICTION_COLOR, axis=2))
        assert rows.size and cols.min() > panel.shape[1] // 2              # patient left: image right
        if vertical == "top":                                              # anterior up
            assert rows.max() < panel.shape[0] // 2
        else:                                                              # superior up: inferior low
            assert rows.min() > panel.shape[0] * 2 // 3


def test_segmentation_figure_png(tmp_path):
    shape = (10, 16, 16)
    ct = np.zeros(shape)
    label = np.zeros(shape, np.uint8)
    label[3:6, 4:9, 4:9] = 1
    path = tmp_path / "figure.png"
    image = figures.segmentation_figure(path, ct, (2.0, 1.0, 1.0), label, {"gate2": np.full(shape, 0.5)},
                                        truth_zyx=label)
    np.testing.assert_array_equal(read_png(path), image)
    assert np.all(image == figures.PREDICTION_COLOR, axis=2).any()
    assert np.all(image == figures.TRUTH_COLOR, axis=2).any()


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
    read = sitk.ReadImage(str(tmp_path / "real.png"))
    assert read.GetSize() == (image.shape[1], image.shape[0])


def test_segmentation_figure_empty_label_and_bad_shapes():
    ct = np.zeros((6, 8, 8))
    image = figures.segmentation_figure(None, ct, (2.0, 1.0, 1.0), np.zeros(ct.shape), {})
    assert image.dtype == np.uint8
    with pytest.raises(ValueError, match="expected the CT grid"):
        figures.segmentation_figure(None, ct, (1, 1, 1), np.zeros((6, 8, 7)), {})


def test_overlay_color_table_file_is_generated_from_inferno(repo_root):
    path = repo_root / "Resources" / "ColorTables" / "AttentionInferno.txt"
    assert path.read_text() == figures.attention_color_table_text(), \
        "regenerate it with reports.figures.attention_color_table_text()"
    rgba = figures.attention_color_table_rgba()
    assert rgba.shape == (256, 4) and rgba.dtype == np.uint8
    assert rgba[0, 3] == 0 and rgba[255, 3] == 255
    # The alpha ramp ends where the Slicer overlays' display threshold begins.
    opaque_from = int(np.argmax(rgba[:, 3] == 255))
    assert opaque_from == round(figures.TRANSPARENT_FRACTION * 255)
