"""Numpy-only figure rendering: PNG writer, CT windowing, inferno colour map, bitmap font,
montages, learning curves and the segmentation + attention figure. No matplotlib.

Images are `(H, W, 3)` (or `(H, W, 4)`) uint8 arrays, row 0 at the top. Volumes are numpy
`(z, y, x)` arrays with `spacing_zyx` in mm.

Display convention (`segmentation_figure`): volumes are assumed to be in canonical LPS
orientation, i.e. array x grows toward the patient's Left, y toward Posterior, z toward
Superior (what `geometry.to_canonical` returns). Slices are shown in the radiological
convention: patient left on the image right, anterior up on axial slices and superior up on
coronal slices, with every pixel square in millimetres.
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import Callable, Mapping, Optional, Sequence, Union

import numpy as np

from .imageio import atomic_output
from .metrics import dice, surface

PathLike = Union[str, os.PathLike]
Color = tuple[int, int, int]

# matplotlib's "inferno" (van der Walt & Smith, CC0), 256 entries rounded to 8 bits, RRGGBB hex.
_INFERNO_HEX = (
    "00000401000501010601010802010a02020c02020e03021004031204031405041706041907051b08051d09061f0a0722"
    "0b07240c08260d08290e092b10092d110a30120a32140b34150b37160b39180c3c190c3e1b0c411c0c431e0c451f0c48"
    "210c4a230c4c240c4f260c51280b53290b552b0b572d0b592f0a5b310a5c320a5e340a5f3609613809623909633b0964"
    "3d09653e0966400a67420a68440a68450a69470b6a490b6a4a0c6b4c0c6b4d0d6c4f0d6c510e6c520e6d540f6d550f6d"
    "57106e59106e5a116e5c126e5d126e5f136e61136e62146e64156e65156e67166e69166e6a176e6c186e6d186e6f196e"
    "71196e721a6e741a6e751b6e771c6d781c6d7a1d6d7c1d6d7d1e6d7f1e6c801f6c82206c84206b85216b87216b88226a"
    "8a226a8c23698d23698f24699025689225689326679526679727669827669a28659b29649d29649f2a63a02a63a22b62"
    "a32c61a52c60a62d60a82e5fa92e5eab2f5ead305dae305cb0315bb1325ab3325ab43359b63458b73557b93556ba3655"
    "bc3754bd3853bf3952c03a51c13a50c33b4fc43c4ec63d4dc73e4cc83f4bca404acb4149cc4248ce4347cf4446d04545"
    "d24644d34743d44842d54a41d74b3fd84c3ed94d3dda4e3cdb503bdd513ade5238df5337e05536e15635e25734e35933"
    "e45a31e55c30e65d2fe75e2ee8602de9612bea632aeb6429eb6628ec6726ed6925ee6a24ef6c23ef6e21f06f20f1711f"
    "f1731df2741cf3761bf37819f47918f57b17f57d15f67e14f68013f78212f78410f8850ff8870ef8890cf98b0bf98c0a"
    "f98e09fa9008fa9207fa9407fb9606fb9706fb9906fb9b06fb9d07fc9f07fca108fca309fca50afca60cfca80dfcaa0f"
    "fcac11fcae12fcb014fcb216fcb418fbb61afbb81dfbba1ffbbc21fbbe23fac026fac228fac42afac62df9c72ff9c932"
    "f9cb35f8cd37f8cf3af7d13df7d340f6d543f6d746f5d949f5db4cf4dd4ff4df53f4e156f3e35af3e55df2e661f2e865"
    "f2ea69f1ec6df1ed71f1ef75f1f179f2f27df2f482f3f586f3f68af4f88ef5f992f6fa96f8fb9af9fc9dfafda1fcffa4"
)
INFERNO_TABLE = np.frombuffer(bytes.fromhex("".join(_INFERNO_HEX)), dtype=np.uint8).reshape(256, 3)

# ----------------------------------------------------------------------------------- PNG


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of a uint8 image: (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA, row 0 on top."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"PNG images must be uint8; got {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4) or 0 in image.shape[:2]:
        raise ValueError(f"expected (H, W), (H, W, 3) or (H, W, 4) with H, W > 0; got {image.shape}")
    height, width, channels = image.shape
    colour_type = {1: 0, 3: 2, 4: 6}[channels]
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    # Filter type 0 (none) on every row: a leading zero byte per scanline.
    raw = np.concatenate([np.zeros((height, 1), np.uint8), image.reshape(height, width * channels)], axis=1)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)) + _png_chunk(b"IEND", b""))


def write_png(path: PathLike, image: np.ndarray) -> None:
    """Write a uint8 (H, W), (H, W, 3) or (H, W, 4) image as PNG, atomically.

    Through `imageio.atomic_output`: a reader never sees a half-written figure.
    """
    data = encode_png(image)
    with atomic_output(path) as temporary:
        temporary.write_bytes(data)


# ---------------------------------------------------------------------------- intensities


def window_ct(array: np.ndarray, level: float = 40.0, width: float = 400.0) -> np.ndarray:
    """CT values in HU mapped linearly to 0..1 (float32) over [level - width/2, level + width/2].

    The default is the usual abdominal soft-tissue window (W 400, L 40).
    """
    low = level - width / 2.0
    return np.clip((np.asarray(array, np.float32) - low) / float(width), 0.0, 1.0)


def inferno(values: np.ndarray) -> np.ndarray:
    """matplotlib's inferno colour map: values 0..1 (clipped; NaN -> 0) to (..., 3) uint8."""
    values = np.nan_to_num(np.asarray(values, np.float64), nan=0.0)
    return INFERNO_TABLE[np.clip(np.rint(values * 255.0), 0, 255).astype(np.intp)]


def gray(values: np.ndarray) -> np.ndarray:
    """Grey-scale colour map: values 0..1 (clipped) to (..., 3) uint8."""
    level = np.clip(np.rint(np.nan_to_num(np.asarray(values, np.float64)) * 255.0), 0, 255).astype(np.uint8)
    return np.repeat(level[..., None], 3, axis=-1)


def overlay(ct_rgb: np.ndarray, values: np.ndarray, cmap: Callable[[np.ndarray], np.ndarray] = inferno,
            alpha: float = 0.6, threshold: float = 0.0) -> np.ndarray:
    """Blend `cmap(values)` over an (H, W, 3) uint8 image where `values > threshold`.

    `values` is (H, W) in 0..1; below the threshold the CT shows through unchanged so faint
    attention does not veil the anatomy.
    """
    ct_rgb = np.asarray(ct_rgb)
    values = np.asarray(values, np.float64)
    if values.shape != ct_rgb.shape[:2]:
        raise ValueError(f"values {values.shape} and image {ct_rgb.shape[:2]} differ in size")
    coloured = cmap(values).astype(np.float64)
    blended = (1.0 - alpha) * ct_rgb[..., :3].astype(np.float64) + alpha * coloured
    show = (values > threshold)[..., None]
    result = ct_rgb.copy()
    result[..., :3] = np.where(show, np.rint(blended), ct_rgb[..., :3]).astype(np.uint8)
    return result


def outline(mask: np.ndarray) -> np.ndarray:
    """Edge pixels of a 2D mask: the mask minus its 4-connected erosion (bool, same shape)."""
    return surface(np.asarray(mask) != 0)


def paint(image: np.ndarray, where: np.ndarray, color: Sequence[int]) -> np.ndarray:
    """Set the pixels of `image` where `where` is true to `color` (in place); returns `image`."""
    image[np.asarray(where, bool), :3] = np.asarray(color[:3], np.uint8)
    return image


# ----------------------------------------------------------------------------------- font

# 5x7 glyphs ('#' = ink), rows top to bottom; two extra rows hang below the baseline for the
# descenders of g, j, p, q, y, comma, semicolon and µ.
_GLYPHS = {
    " ": "..... ..... ..... ..... ..... ..... .....",
    "0": ".###. #...# #..## #.#.# ##..# #...# .###.",
    "1": "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.",
    "2": ".###. #...# ....# ...#. ..#.. .#... #####",
    "3": "##### ...#. ..#.. ...#. ....# #...# .###.",
    "4": "...#. ..##. .#.#. #..#. ##### ...#. ...#.",
    "5": "##### #.... ####. ....# ....# #...# .###.",
    "6": "..##. .#... #.... ####. #...# #...# .###.",
    "7": "##### ....# ...#. ..#.. .#... .#... .#...",
    "8": ".###. #...# #...# .###. #...# #...# .###.",
    "9": ".###. #...# #...# .#### ....# ...#. .##..",
    "A": ".###. #...# #...# ##### #...# #...# #...#",
    "B": "####. #...# #...# ####. #...# #...# ####.",
    "C": ".###. #...# #.... #.... #.... #...# .###.",
    "D": "###.. #..#. #...# #...# #...# #..#. ###..",
    "E": "##### #.... #.... ####. #.... #.... #####",
    "F": "##### #.... #.... ####. #.... #.... #....",
    "G": ".###. #...# #.... #.### #...# #...# .####",
    "H": "#...# #...# #...# ##### #...# #...# #...#",
    "I": ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.",
    "J": "..### ...#. ...#. ...#. ...#. #..#. .##..",
    "K": "#...# #..#. #.#.. ##... #.#.. #..#. #...#",
    "L": "#.... #.... #.... #.... #.... #.... #####",
    "M": "#...# ##.## #.#.# #.#.# #...# #...# #...#",
    "N": "#...# #...# ##..# #.#.# #..## #...# #...#",
    "O": ".###. #...# #...# #...# #...# #...# .###.",
    "P": "####. #...# #...# ####. #.... #.... #....",
    "Q": ".###. #...# #...# #...# #.#.# #..#. .##.#",
    "R": "####. #...# #...# ####. #.#.. #..#. #...#",
    "S": ".#### #.... #.... .###. ....# ....# ####.",
    "T": "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
    "U": "#...# #...# #...# #...# #...# #...# .###.",
    "V": "#...# #...# #...# #...# #...# .#.#. ..#..",
    "W": "#...# #...# #...# #.#.# #.#.# #.#.# .#.#.",
    "X": "#...# #...# .#.#. ..#.. .#.#. #...# #...#",
    "Y": "#...# #...# .#.#. ..#.. ..#.. ..#.. ..#..",
    "Z": "##### ....# ...#. ..#.. .#... #.... #####",
    "a": "..... ..... .###. ....# .#### #...# .####",
    "b": "#.... #.... #.##. ##..# #...# #...# ####.",
    "c": "..... ..... .###. #.... #.... #...# .###.",
    "d": "....# ....# .##.# #..## #...# #...# .####",
    "e": "..... ..... .###. #...# ##### #.... .###.",
    "f": "..##. .#..# .#... ###.. .#... .#... .#...",
    "g": "..... ..... .#### #...# #...# #...# .#### ....# .###.",
    "h": "#.... #.... #.##. ##..# #...# #...# #...#",
    "i": "..#.. ..... .##.. ..#.. ..#.. ..#.. .###.",
    "j": "...#. ..... ..##. ...#. ...#. ...#. ...#. #..#. .##..",
    "k": "#.... #.... #..#. #.#.. ##... #.#.. #..#.",
    "l": ".##.. ..#.. ..#.. ..#.. ..#.. ..#.. .###.",
    "m": "..... ..... ##.#. #.#.# #.#.# #.#.# #.#.#",
    "n": "..... ..... #.##. ##..# #...# #...# #...#",
    "o": "..... ..... .###. #...# #...# #...# .###.",
    "p": "..... ..... ####. #...# #...# #...# ####. #.... #....",
    "q": "..... ..... .#### #...# #...# #...# .#### ....# ....#",
    "r": "..... ..... #.##. ##..# #.... #.... #....",
    "s": "..... ..... .#### #.... .###. ....# ####.",
    "t": ".#... .#... ###.. .#... .#... .#..# ..##.",
    "u": "..... ..... #...# #...# #...# #..## .##.#",
    "v": "..... ..... #...# #...# #...# .#.#. ..#..",
    "w": "..... ..... #...# #...# #.#.# #.#.# .#.#.",
    "x": "..... ..... #...# .#.#. ..#.. .#.#. #...#",
    "y": "..... ..... #...# #...# #...# #...# .#### ....# .###.",
    "z": "..... ..... ##### ...#. ..#.. .#... #####",
    ".": "..... ..... ..... ..... ..... .##.. .##..",
    ",": "..... ..... ..... ..... ..... .##.. .##.. ..#.. .#...",
    ":": "..... .##.. .##.. ..... .##.. .##.. .....",
    ";": "..... .##.. .##.. ..... .##.. .##.. ..#.. .#...",
    "-": "..... ..... ..... ##### ..... ..... .....",
    "+": "..... ..#.. ..#.. ##### ..#.. ..#.. .....",
    "=": "..... ..... ##### ..... ##### ..... .....",
    "_": "..... ..... ..... ..... ..... ..... #####",
    "/": "..... ....# ...#. ..#.. .#... #.... .....",
    "(": "...#. ..#.. .#... .#... .#... ..#.. ...#.",
    ")": ".#... ..#.. ...#. ...#. ...#. ..#.. .#...",
    "[": ".###. .#... .#... .#... .#... .#... .###.",
    "]": ".###. ...#. ...#. ...#. ...#. ...#. .###.",
    "%": "##... ##..# ...#. ..#.. .#... #..## ...##",
    "'": "..#.. ..#.. .#... ..... ..... ..... .....",
    '"': ".#.#. .#.#. .#.#. ..... ..... ..... .....",
    "!": "..#.. ..#.. ..#.. ..#.. ..#.. ..... ..#..",
    "?": ".###. #...# ....# ...#. ..#.. ..... ..#..",
    "<": "...#. ..#.. .#... #.... .#... ..#.. ...#.",
    ">": ".#... ..#.. ...#. ....# ...#. ..#.. .#...",
    "#": ".#.#. .#.#. ##### .#.#. ##### .#.#. .#.#.",
    "*": "..... ..#.. #.#.# .###. #.#.# ..#.. .....",
    "|": "..#.. ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
    "±": "..#.. ..#.. ##### ..#.. ..#.. ..... #####",
    "×": "..... #...# .#.#. ..#.. .#.#. #...# .....",
    "µ": "..... ..... #...# #...# #...# #..## ###.# #.... #....",
    "°": ".##.. #..#. #..#. .##.. ..... ..... .....",
}
GLYPH_WIDTH, GLYPH_HEIGHT, GLYPH_ROWS = 5, 7, 9      # ink box, cap height, rows incl. descenders
ADVANCE, LINE_HEIGHT = GLYPH_WIDTH + 1, GLYPH_ROWS + 1


def _glyph_bitmap(rows: str) -> np.ndarray:
    bitmap = np.zeros((GLYPH_ROWS, GLYPH_WIDTH), bool)
    for index, row in enumerate(rows.split()):
        bitmap[index] = [c == "#" for c in row]
    return bitmap


FONT: dict[str, np.ndarray] = {char: _glyph_bitmap(rows) for char, rows in _GLYPHS.items()}


def text_size(text: str, scale: int = 1) -> tuple[int, int]:
    """(width, height) in pixels of `text` drawn by `draw_text` (lines split at "\\n")."""
    lines = text.split("\n")
    width = max(len(line) for line in lines) * ADVANCE - 1 if any(lines) else 0
    return max(width, 0) * scale, (len(lines) * LINE_HEIGHT - 1) * scale


def text_bitmap(text: str, scale: int = 1) -> np.ndarray:
    """Bool (height, width) bitmap of `text`; characters without a glyph render as "?"."""
    width, height = text_size(text, scale)
    bitmap = np.zeros((height // scale, max(width // scale, 0)), bool)
    for line_index, line in enumerate(text.split("\n")):
        top = line_index * LINE_HEIGHT
        for index, char in enumerate(line):
            glyph = FONT.get(char, FONT["?"])
            bitmap[top:top + GLYPH_ROWS, index * ADVANCE:index * ADVANCE + GLYPH_WIDTH] |= glyph
    return np.kron(bitmap, np.ones((scale, scale), bool)) if scale > 1 else bitmap


def draw_text(img: np.ndarray, x: int, y: int, text: str, color: Sequence[int] = (255, 255, 255),
              scale: int = 1) -> np.ndarray:
    """Draw `text` on an (H, W, 3|4) uint8 image in place, top-left corner at column x, row y.

    Text outside the image is clipped. Returns `img`.
    """
    bitmap = text_bitmap(text, scale)
    height, width = bitmap.shape
    top, left = max(y, 0), max(x, 0)
    bottom, right = min(y + height, img.shape[0]), min(x + width, img.shape[1])
    if bottom <= top or right <= left:
        return img
    ink = bitmap[top - y:bottom - y, left - x:right - x]
    region = img[top:bottom, left:right]
    region[ink, :3] = np.asarray(color[:3], np.uint8)
    if img.shape[2] == 4:
        region[ink, 3] = 255
    return img


def _fit(text: str, width_px: int, scale: int) -> str:
    """`text` cut (ending in "..") so that it fits in `width_px`."""
    fits = max((width_px + 1) // (ADVANCE * scale), 0)
    return text if len(text) <= fits else text[:max(fits - 2, 0)] + ".."[:fits]


# ------------------------------------------------------------------------------- layout


def canvas(height: int, width: int, color: Sequence[int] = (0, 0, 0)) -> np.ndarray:
    """A new (height, width, 3) uint8 image filled with `color`."""
    image = np.empty((height, width, 3), np.uint8)
    image[:] = np.asarray(color[:3], np.uint8)
    return image


def montage(panels: Sequence[np.ndarray], titles: Optional[Sequence[str]] = None, columns: Optional[int] = None,
            background: Sequence[int] = (0, 0, 0), title_color: Sequence[int] = (255, 255, 255),
            scale: int = 2, pad: int = 6) -> np.ndarray:
    """Arrange (H, W, 3) uint8 panels on a grid, row by row, each with its title above it.

    Each row is as tall as its tallest panel and each column as wide as its widest, so a flat
    coronal row does not inherit the height of the axial one; panels are centred in their
    cell. Titles too wide for a cell are shortened. Returns an (H, W, 3) uint8 image.
    """
    if not panels:
        raise ValueError("montage needs at least one panel")
    titles = list(titles) if titles is not None else [""] * len(panels)
    if len(titles) != len(panels):
        raise ValueError(f"{len(panels)} panels but {len(titles)} titles")
    columns = max(1, min(columns or len(panels), len(panels)))
    cells = [divmod(index, columns) for index in range(len(panels))]
    rows = cells[-1][0] + 1
    heights = [max(p.shape[0] for p, (r, _) in zip(panels, cells) if r == row) for row in range(rows)]
    widths = [max(p.shape[1] for p, (_, c) in zip(panels, cells) if c == col) for col in range(columns)]
    title_h = (LINE_HEIGHT * scale + pad) if any(titles) else 0
    tops = np.cumsum([pad] + [title_h + h + pad for h in heights])
    lefts = np.cumsum([pad] + [w + pad for w in widths])
    image = canvas(int(tops[-1]), int(lefts[-1]), background)
    for panel, title, (row, column) in zip(panels, titles, cells):
        top, left = int(tops[row]), int(lefts[column])
        if title:
            draw_text(image, left, top, _fit(title, widths[column], scale), title_color, scale)
        y0 = top + title_h + (heights[row] - panel.shape[0]) // 2
        x0 = left + (widths[column] - panel.shape[1]) // 2
        image[y0:y0 + panel.shape[0], x0:x0 + panel.shape[1]] = panel[..., :3]
    return image


# ------------------------------------------------------------------------ learning curve

#: matplotlib's "tab10" cycle: distinguishable lines, also in grey-scale print.
PALETTE: tuple[Color, ...] = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
                              (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))


def nice_ticks(low: float, high: float, count: int = 5) -> np.ndarray:
    """About `count` round tick values (1, 2 or 5 times a power of ten) covering [low, high]."""
    if not high > low:
        high = low + 1.0
    raw = (high - low) / max(count, 1)
    power = 10.0 ** np.floor(np.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = np.floor(low / step + 1e-9) * step
    last = np.ceil(high / step - 1e-9) * step
    return np.round(np.arange(first, last + step / 2, step), 12)


def _tick_label(value: float, step: float) -> str:
    decimals = max(0, int(-np.floor(np.log10(step) + 1e-9))) if step < 1 else 0
    text = f"{value:.{decimals}f}"
    return "0" if text.strip("-0.") == "" else text


def draw_line(image: np.ndarray, x0: float, y0: float, x1: float, y1: float, color: Sequence[int],
              thickness: int = 1) -> None:
    """Straight line between two (x, y) pixel positions, `thickness` pixels wide, in place."""
    steps = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
    xs = np.rint(np.linspace(x0, x1, steps + 1)).astype(int)
    ys = np.rint(np.linspace(y0, y1, steps + 1)).astype(int)
    low, high = -((thickness - 1) // 2), thickness // 2
    for dy in range(low, high + 1):
        for dx in range(low, high + 1):
            px, py = xs + dx, ys + dy
            inside = (px >= 0) & (px < image.shape[1]) & (py >= 0) & (py < image.shape[0])
            image[py[inside], px[inside], :3] = np.asarray(color[:3], np.uint8)


def learning_curve_image(epochs: Sequence[float], series: Mapping[str, Sequence[float]],
                         title: str = "", xlabel: str = "epoch", ylabel: str = "",
                         size: tuple[int, int] = (440, 680)) -> np.ndarray:
    """Line plot of every series against `epochs` as an (H, W, 3) uint8 image (size = (H, W)).

    Non-finite values leave a gap. Axes carry round ticks, the legend sits in the top right.
    """
    epochs = np.asarray(epochs, np.float64)
    if epochs.size == 0:
        raise ValueError("learning curve needs at least one epoch")
    values = {name: np.asarray(v, np.float64) for name, v in series.items()}
    for name, v in values.items():
        if v.shape != epochs.shape:
            raise ValueError(f"series {name!r} has {v.size} values for {epochs.size} epochs")
    height, width = size
    image = canvas(height, width, (255, 255, 255))
    black, grid = (0, 0, 0), (225, 225, 225)
    left, right, top, bottom = 64, width - 16, 34 if title else 16, height - 46

    finite = np.concatenate([v[np.isfinite(v)] for v in values.values()] or [np.zeros(0)])
    y_low, y_high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if y_high - y_low < 1e-12:
        y_low, y_high = y_low - 0.5, y_high + 0.5
    y_ticks = nice_ticks(y_low, y_high, 5)
    y_low, y_high = float(y_ticks[0]), float(y_ticks[-1])
    x_low, x_high = float(epochs.min()), float(epochs.max())
    if x_high - x_low < 1e-12:
        x_low, x_high = x_low - 0.5, x_high + 0.5
    x_ticks = nice_ticks(x_low, x_high, 6)
    if np.all(np.mod(epochs, 1) == 0):       # integer epochs: integer ticks only
        x_ticks = np.unique(np.round(x_ticks[np.mod(x_ticks, 1) == 0]))
    x_ticks = x_ticks[(x_ticks >= x_low - 1e-9) & (x_ticks <= x_high + 1e-9)]

    def px(x):
        return left + (np.asarray(x) - x_low) / (x_high - x_low) * (right - left)

    def py(y):
        return bottom - (np.asarray(y) - y_low) / (y_high - y_low) * (bottom - top)

    y_step = float(y_ticks[1] - y_ticks[0]) if len(y_ticks) > 1 else 1.0
    x_step = float(x_ticks[1] - x_ticks[0]) if len(x_ticks) > 1 else 1.0
    for tick in y_ticks:
        y = int(round(float(py(tick))))
        draw_line(image, left, y, right, y, grid)
        draw_line(image, left - 4, y, left, y, black)
        label = _tick_label(tick, y_step)
        draw_text(image, left - 7 - text_size(label)[0], y - 3, label, black)
    for tick in x_ticks:
        x = int(round(float(px(tick))))
        draw_line(image, x, top, x, bottom, grid)
        draw_line(image, x, bottom, x, bottom + 4, black)
        label = _tick_label(tick, x_step)
        draw_text(image, x - text_size(label)[0] // 2, bottom + 8, label, black)
    draw_line(image, left, top, left, bottom, black)
    draw_line(image, left, bottom, right, bottom, black)
    draw_line(image, left, top, right, top, black)
    draw_line(image, right, top, right, bottom, black)
    if xlabel:
        w, _ = text_size(xlabel, 2)
        draw_text(image, (left + right - w) // 2, height - 22, xlabel, black, 2)
    if ylabel:
        draw_text(image, 4, max(top - 14, 2), ylabel, black)
    if title:
        # Long titles (dataset names) drop to the small font, then get cut, rather than overflow.
        scale = 2 if text_size(title, 2)[0] <= width - 8 else 1
        title = _fit(title, width - 8, scale)
        w, _ = text_size(title, scale)
        draw_text(image, (width - w) // 2, 8 if scale == 2 else 12, title, black, scale)

    for index, (name, v) in enumerate(values.items()):
        color = PALETTE[index % len(PALETTE)]
        xs, ys = px(epochs), py(v)
        # Join consecutive *measured* points: a series sampled every few epochs (validation)
        # is still a line, not scattered dots.
        measured = np.flatnonzero(np.isfinite(v))
        for i, j in zip(measured[:-1], measured[1:]):
            draw_line(image, xs[i], ys[i], xs[j], ys[j], color, thickness=2)
        if len(v) <= 40:         # markers keep single points and short runs visible
            for x, y, ok in zip(xs, ys, np.isfinite(v)):
                if ok:
                    image[int(round(y)) - 2:int(round(y)) + 3, int(round(x)) - 2:int(round(x)) + 3] = color

    if values:                   # legend, top right inside the axes
        names = list(values)
        legend_w = 34 + max(text_size(n)[0] for n in names)
        legend_h = 8 + LINE_HEIGHT * len(names)
        x0, y0 = right - legend_w - 8, top + 8
        image[y0:y0 + legend_h, x0:x0 + legend_w] = 255
        for a, b, c, d in ((x0, y0, x0 + legend_w, y0), (x0, y0 + legend_h, x0 + legend_w, y0 + legend_h),
                           (x0, y0, x0, y0 + legend_h), (x0 + legend_w, y0, x0 + legend_w, y0 + legend_h)):
            draw_line(image, a, b, c, d, (160, 160, 160))
        for index, name in enumerate(names):
            y = y0 + 5 + index * LINE_HEIGHT
            draw_line(image, x0 + 6, y + 3, x0 + 26, y + 3, PALETTE[index % len(PALETTE)], thickness=2)
            draw_text(image, x0 + 30, y, name, black)
    return image


def learning_curve_png(path: PathLike, epochs: Sequence[float], series: Mapping[str, Sequence[float]],
                       title: str = "", xlabel: str = "epoch", ylabel: str = "") -> np.ndarray:
    """Write `learning_curve_image(...)` to `path` as PNG (atomically); returns the image."""
    image = learning_curve_image(epochs, series, title=title, xlabel=xlabel, ylabel=ylabel)
    write_png(path, image)
    return image


# ------------------------------------------------------------------- segmentation figure

PREDICTION_COLOR: Color = (0, 230, 255)     # cyan: visible on grey CT and on inferno alike
TRUTH_COLOR: Color = (255, 60, 200)         # magenta: tells apart from cyan, also for red-green blindness
MARKER_COLOR: Color = (200, 200, 200)


def _resample_axis(array: np.ndarray, axis: int, size: int, linear: bool) -> np.ndarray:
    """Resample one axis of `array` to `size` samples spanning the same extent.

    Pixel centres are corner-anchored: output sample i covers the same fraction of the extent
    as in the input, so the physical field of view is kept exactly.
    """
    length = array.shape[axis]
    centres = (np.arange(size) + 0.5) * (length / size) - 0.5     # in input index units
    if not linear:
        index = np.clip(np.floor(centres + 0.5), 0, length - 1).astype(np.intp)
        return np.take(array, index, axis=axis)
    centres = np.clip(centres, 0, length - 1)
    low = np.floor(centres).astype(np.intp)
    high = np.minimum(low + 1, length - 1)
    weight_shape = [1] * array.ndim
    weight_shape[axis] = size
    weight = (centres - low).reshape(weight_shape)
    return np.take(array, low, axis=axis) * (1.0 - weight) + np.take(array, high, axis=axis) * weight


def square_pixels(slice_2d: np.ndarray, spacing_rc: Sequence[float], pixel_mm: float,
                  linear: bool = True) -> np.ndarray:
    """Resample a 2D slice with (row, column) spacing in mm to square `pixel_mm` pixels.

    Linear interpolation (float result) for intensities, nearest neighbour for labels.
    """
    out = np.asarray(slice_2d, np.float64 if linear else slice_2d.dtype)
    for axis in (0, 1):
        size = max(1, int(round(out.shape[axis] * float(spacing_rc[axis]) / pixel_mm)))
        out = _resample_axis(out, axis, size, linear)
    return out


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


def _views(volume_zyx: np.ndarray, spacing_zyx: Sequence[float], centre_zyx: Sequence[int],
           pixel_mm: float, linear: bool) -> list[np.ndarray]:
    """Axial and coronal display slices through `centre_zyx` with square pixels."""
    z, y, _ = centre_zyx
    return [square_pixels(axial_view(volume_zyx, z), (spacing_zyx[1], spacing_zyx[2]), pixel_mm, linear),
            square_pixels(coronal_view(volume_zyx, y), (spacing_zyx[0], spacing_zyx[2]), pixel_mm, linear)]


def _display_pixel_mm(shape_zyx: Sequence[int], spacing_zyx: Sequence[float],
                      smallest: int = 240, largest: int = 360) -> float:
    """Pixel size that shows the largest panel side with `smallest`..`largest` pixels.

    Starts from the finest voxel edge (no detail lost) and zooms in or out to keep the
    figure readable: a 3 mm CT would otherwise be tiny, a 0.6 mm one needlessly huge.
    """
    extent = max(n * s for n, s in zip(shape_zyx, spacing_zyx))
    pixel = max(float(min(spacing_zyx)), extent / largest)
    return min(pixel, extent / smallest)


def _orientation_letters(panel: np.ndarray, top: str, bottom: str, scale: int) -> None:
    """R/L on the left/right edges and the given letters at top/bottom (radiological view)."""
    h, w = panel.shape[:2]
    cw, ch = text_size("R", scale)
    for text, x, y in (("R", 3, (h - ch) // 2), ("L", w - cw - 3, (h - ch) // 2),
                       (top, (w - cw) // 2, 3), (bottom, (w - cw) // 2, h - GLYPH_HEIGHT * scale - 3)):
        draw_text(panel, x, y, text, MARKER_COLOR, scale)


def colorbar(width: int, height: int, cmap: Callable[[np.ndarray], np.ndarray] = inferno) -> np.ndarray:
    """(height, width, 3) uint8 horizontal colour bar from 0 (left) to 1 (right)."""
    return np.repeat(cmap(np.linspace(0.0, 1.0, width))[None], height, axis=0)


def slice_centre(label_zyx: np.ndarray) -> tuple[int, int, int]:
    """(z, y, x) voxel index of the centroid of the non-zero voxels; the volume centre if none."""
    label = np.asarray(label_zyx) != 0
    if label.any():
        return tuple(int(round(float(c.mean()))) for c in np.nonzero(label))  # type: ignore[return-value]
    return tuple(n // 2 for n in label.shape)  # type: ignore[return-value]


def segmentation_panels(ct_zyx: np.ndarray, spacing_zyx: Sequence[float], label_zyx: np.ndarray,
                        attention: Mapping[str, np.ndarray], truth_zyx: Optional[np.ndarray] = None,
                        level: float = 40.0, width: float = 400.0,
                        scale: int = 2) -> tuple[list[np.ndarray], list[str], int]:
    """The panels of `segmentation_figure`, row by row, with their titles and the column count.

    Row 0 is axial, row 1 coronal; column 0 the CT with outlines, then one column per gate.
    """
    ct_zyx = np.asarray(ct_zyx)
    if ct_zyx.ndim != 3:
        raise ValueError(f"ct_zyx must be a 3D (z, y, x) array; got shape {ct_zyx.shape}")
    volumes = {"label_zyx": label_zyx, "truth_zyx": truth_zyx, **{f"attention[{k!r}]": v for k, v in attention.items()}}
    for name, volume in volumes.items():
        if volume is not None and np.shape(volume) != ct_zyx.shape:
            raise ValueError(f"{name} has shape {np.shape(volume)}; expected the CT grid {ct_zyx.shape}")
    spacing_zyx = tuple(float(s) for s in spacing_zyx)
    centre = slice_centre(label_zyx)
    pixel_mm = _display_pixel_mm(ct_zyx.shape, spacing_zyx)

    def views(volume: np.ndarray) -> list[np.ndarray]:
        return _views(volume, spacing_zyx, centre, pixel_mm, linear=True)

    def edges(mask_zyx: np.ndarray) -> list[np.ndarray]:
        # Masks are interpolated linearly and cut at 0.5: the 0.5 iso-line of the labels,
        # smoother than nearest-neighbour stair steps, and the same region.
        return [outline(view >= 0.5) for view in views((np.asarray(mask_zyx) != 0).astype(np.float32))]

    ct_views = [gray(view) for view in views(window_ct(ct_zyx, level, width))]
    seg_edges = edges(label_zyx)
    truth_edges = edges(truth_zyx) if truth_zyx is not None else None
    gate_views = {name: views(np.clip(np.nan_to_num(np.asarray(v, np.float32)), 0.0, 1.0))
                  for name, v in attention.items()}
    gate_max = {name: float(np.nanmax(v)) if np.size(v) else 0.0 for name, v in attention.items()}

    panels, titles = [], []
    row_names = (f"axial z={centre[0]}", f"coronal y={centre[1]}")
    for row, (top, bottom) in enumerate((("A", "P"), ("S", "I"))):
        panel = ct_views[row].copy()
        if truth_edges is not None:
            paint(panel, truth_edges[row], TRUTH_COLOR)
        paint(panel, seg_edges[row], PREDICTION_COLOR)
        _orientation_letters(panel, top, bottom, scale)
        panels.append(panel)
        titles.append(row_names[row])
        for name, gate in gate_views.items():
            panels.append(paint(overlay(ct_views[row], gate[row], inferno, alpha=0.65, threshold=0.0),
                                seg_edges[row], PREDICTION_COLOR))
            titles.append(f"{name} max {gate_max[name]:.2f}")
    return panels, titles, 1 + len(attention)


def segmentation_figure(path: Optional[PathLike], ct_zyx: np.ndarray, spacing_zyx: Sequence[float],
                        label_zyx: np.ndarray, attention: Mapping[str, np.ndarray],
                        truth_zyx: Optional[np.ndarray] = None, title: Optional[str] = None,
                        level: float = 40.0, width: float = 400.0) -> np.ndarray:
    """CT + segmentation outline and each attention gate's map, axial and coronal; PNG at `path`.

    All volumes are (z, y, x) arrays on the CT grid in canonical LPS orientation (see the module
    docstring), `spacing_zyx` in mm. Rows: the axial and the coronal slice through the centroid
    of the segmentation (any non-zero label; the volume centre if empty). Columns: the CT in
    the W `width` / L `level` HU window with the segmentation outline (cyan) and, if given, the
    ground-truth outline (magenta); then one column per gate, its map (0..1) in inferno over the
    CT with the segmentation outline. Pixels are square in mm. The title defaults to the Dice
    against `truth_zyx` when given. Returns the (H, W, 3) image; `path=None` only renders it.
    """
    scale = 2
    panels, titles, columns = segmentation_panels(ct_zyx, spacing_zyx, label_zyx, attention, truth_zyx,
                                                  level, width, scale)
    grid = montage(panels, titles, columns=columns, scale=scale)

    # Header: title, then the legend (outline colours and the attention colour bar).
    if title is None:
        title = "segmentation" + (f"  Dice {dice(label_zyx, truth_zyx):.2f}" if truth_zyx is not None else "")
    header_h = 2 * LINE_HEIGHT * scale + 14
    image = canvas(header_h + grid.shape[0], max(grid.shape[1], 520), (0, 0, 0))
    image[header_h:, :grid.shape[1]] = grid
    draw_text(image, 6, 6, _fit(title, image.shape[1] - 12, scale), (255, 255, 255), scale)
    x, y = 6, 10 + LINE_HEIGHT * scale
    legend = [("seg", PREDICTION_COLOR)] + ([("truth", TRUTH_COLOR)] if truth_zyx is not None else [])
    for text, color in legend:
        image[y + 6:y + 10, x:x + 24] = color
        draw_text(image, x + 30, y, text, (255, 255, 255), scale)
        x += 30 + text_size(text, scale)[0] + 20
    if attention:
        draw_text(image, x, y, "attention 0", (255, 255, 255), scale)
        x += text_size("attention 0", scale)[0] + 8
        image[y:y + GLYPH_HEIGHT * scale, x:x + 120] = colorbar(120, GLYPH_HEIGHT * scale)
        draw_text(image, x + 128, y, "1", (255, 255, 255), scale)
    if path is not None:
        write_png(path, image)
    return image
