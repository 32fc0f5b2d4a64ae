"""Reading CT volumes with validation (NIfTI, NRRD, MetaImage, DICOM series).

Every problem a user can fix becomes ``InputError(path, "<one line>")``: SimpleITK's multi-line
C++ exception text is logged at debug level, never shown.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import struct
import sys
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..core.errors import InputError, PathLike
from .formats import DICOM_FILE_EXTENSIONS as _DICOM_FILE_EXTENSIONS
from .formats import INPUT_EXTENSIONS, full_extension

__all__ = [
    "INPUT_EXTENSIONS",
    "read_ct",
    "read_image",
    "check_ct_like",
]

logger = logging.getLogger(__name__)


_FORMAT_NAMES = {
    ".nii.gz": "NIfTI", ".nii": "NIfTI", ".nrrd": "NRRD", ".nhdr": "NRRD",
    ".mha": "MetaImage", ".mhd": "MetaImage",
}
_SUPPORTED_TEXT = ("NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd) "
                   "or a DICOM series folder")

# Relative spread of slice gaps tolerated in a DICOM series before it counts as irregular
# (scanners write positions with rounding; missing slices make gaps of 2x or more).
_DICOM_GAP_TOLERANCE = 0.1


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _quiet_itk() -> Iterator[None]:
    """Silence ITK warnings (printed straight to stderr) for calls whose failure we report ourselves."""
    previous = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(previous)


@contextlib.contextmanager
def _captured_stderr(path: PathLike) -> Iterator[None]:
    """Catch what C++ readers print on file descriptor 2 (MetaIO: "data not read completely").

    The error is reported as one InputError line; the raw text goes to the debug log instead of
    the user's terminal. Falls back to no capture where descriptor 2 cannot be redirected.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, AttributeError, ValueError):
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace").strip()
            if text:
                logger.debug("%s: reader output: %s", path, text)


def _shape_text(size: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in size)


def _check_shape(shown: PathLike, dimension: int, size: Sequence[int], components: int,
                 pixel_id: int | None = None) -> None:
    """Reject anything that is not a single-channel 3D volume (checked before reading voxels)."""
    if dimension == 2:
        raise InputError(shown, f"is a 2D image ({_shape_text(size)}); a 3D CT volume is required")
    if dimension == 4 and size[3] != 1:
        raise InputError(shown, f"is a 4D image ({_shape_text(size)}: a time series or several volumes); "
                                "a 3D CT volume is required")
    if dimension not in (3, 4):
        raise InputError(shown, f"is a {dimension}D image; a 3D CT volume is required")
    if components != 1:
        raise InputError(shown, f"has {components} components per voxel (RGB or vector image); "
                                "a single-channel CT volume is required")
    if pixel_id in (sitk.sitkComplexFloat32, sitk.sitkComplexFloat64):
        raise InputError(shown, "has complex-valued voxels; a real-valued CT volume is required")
    if size[2] < 2:
        raise InputError(shown, f"is a 2D image (a single slice, {_shape_text(size[:3])}); "
                                "a 3D CT volume is required")
    if min(size[:2]) < 2:
        raise InputError(shown, f"is not a 3D volume (size {_shape_text(size[:3])} has an axis of "
                                "one voxel); a 3D CT volume is required")


def _check_voxels(shown: PathLike, image: sitk.Image) -> None:
    """Finite values, and not a constant volume (a blank export or a failed conversion)."""
    array = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        _raise_non_finite(shown, array)
    low, high = array.min(), array.max()
    if low == high:
        raise InputError(shown, f"contains a single value ({float(low):g}) in every voxel; not a CT")


# --------------------------------------------------------------------------------------------
# NIfTI: ITK's reader (nifticlib) silently fills a truncated file with zeros and replaces NaN/Inf
# voxels by 0, so both are checked on the raw bytes before ITK reads the file.
# --------------------------------------------------------------------------------------------

# NIfTI datatype codes of real floating-point voxels -> numpy type (NaN/Inf only exist there).
_NIFTI_FLOAT_TYPES = {16: "f4", 64: "f8"}


def _nifti_layout(header: bytes) -> tuple[str, int, int, int] | None:
    """(endian, data offset, voxel bytes, datatype) of a NIfTI-1/-2 header; None if unparsable."""
    if len(header) < 348:
        return None
    for endian in ("<", ">"):
        sizeof_hdr = struct.unpack(endian + "i", header[:4])[0]
        if sizeof_hdr == 348 and len(header) >= 348:
            datatype, bitpix = struct.unpack(endian + "2h", header[70:74])
            dims = struct.unpack(endian + "8h", header[40:56])
            vox_offset = int(struct.unpack(endian + "f", header[108:112])[0])
            break
        if sizeof_hdr == 540 and len(header) >= 540:
            datatype, bitpix = struct.unpack(endian + "2h", header[12:16])
            dims = struct.unpack(endian + "8q", header[16:80])
            vox_offset = struct.unpack(endian + "q", header[168:176])[0]
            break
    else:
        return None
    n_dims = dims[0]
    if not 1 <= n_dims <= 7 or bitpix <= 0:
        return None
    voxels = int(np.prod([max(int(d), 1) for d in dims[1:n_dims + 1]], dtype=np.int64))
    return endian, max(vox_offset, sizeof_hdr), voxels * bitpix // 8, datatype


def _scan_nifti(path: Path, shown: PathLike) -> None:
    """InputError if a .nii/.nii.gz is truncated, fails its gzip check, or has NaN/Inf voxels."""
    compressed = path.name.lower().endswith(".gz")
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as stream:
            head = stream.read(4)
            size = 540 if head in (struct.pack("<i", 540), struct.pack(">i", 540)) else 348
            header = head + stream.read(size - 4)
            layout = _nifti_layout(header)
            if layout is None:
                return  # not a NIfTI header we understand: ITK will judge the file
            endian, offset, data_bytes, datatype = layout
            stream.read(offset - len(header))  # extensions
            floats = None
            if datatype in _NIFTI_FLOAT_TYPES:
                dtype = np.dtype(endian + _NIFTI_FLOAT_TYPES[datatype])
                data = stream.read(data_bytes)
                found = len(data)
                floats = np.frombuffer(data, dtype, count=found // dtype.itemsize)
            elif compressed:
                # Decompress everything: gzip verifies the end marker and CRC, which catches
                # truncation and bit rot that the NIfTI reader would turn into zeros.
                found = 0
                while chunk := stream.read(1 << 22):
                    found += len(chunk)
            else:
                found = path.stat().st_size - offset
            if compressed:
                while stream.read(1 << 22):
                    pass
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        logger.debug("%s: NIfTI/gzip check failed: %r", path, error)
        if isinstance(error, EOFError):
            raise InputError(shown, "is truncated (the compressed data ends early); copy or download it again") \
                from None
        raise InputError(shown, "is corrupt (its gzip data fails the integrity check)") from None
    if found < data_bytes:
        raise InputError(shown, f"is truncated: the NIfTI header promises {data_bytes} bytes of voxel data, "
                                f"the file holds {max(found, 0)}") from None
    if floats is not None:
        _check_finite_raw(floats, shown)


def _check_finite_raw(array: np.ndarray, shown: PathLike) -> None:
    """The NaN/Inf message of `_check_voxels`, for voxel values that ITK would hide."""
    if array.size and not np.isfinite(array).all():
        _raise_non_finite(shown, array)


def _raise_non_finite(shown: PathLike, array: np.ndarray) -> None:
    n_nan = int(np.count_nonzero(np.isnan(array)))
    n_inf = int(np.count_nonzero(np.isinf(array)))
    parts = [f"{n_nan} NaN"] * bool(n_nan) + [f"{n_inf} infinite"] * bool(n_inf)
    noun = "voxel" if n_nan + n_inf == 1 else "voxels"
    raise InputError(shown, f"contains {' and '.join(parts)} {noun}; every CT voxel must be a finite number")


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------

def read_image(path: PathLike) -> sitk.Image:
    """Any image file (a labelmap, a map) as SimpleITK reads it; InputError naming the file,
    with ITK's last line as the reason, when it cannot be read. CTs go through read_ct."""
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as error:
        detail = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown reason"
        raise InputError(path, f"cannot be read as an image ({detail})") from None


def read_ct(path: PathLike) -> sitk.Image:
    """Read and validate a CT volume; raise ``InputError(path, problem)`` on anything unusable.

    Accepts NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd), a DICOM series
    folder, or one file of a DICOM series (the whole series is read). Checks: the path exists
    and is readable, the image is 3D (a 4D file with one volume is accepted), single-channel,
    every voxel finite, and not constant. Pixel type, orientation and spacing are returned as
    stored: the caller casts and resamples.
    """
    shown = path
    path = Path(path).expanduser()
    if not path.exists():
        if path.is_symlink():
            raise InputError(shown, "is a broken symbolic link (its target does not exist)")
        raise InputError(shown, "does not exist")
    if path.is_dir():
        image = _read_dicom_folder(path, shown)
    else:
        image = _read_file(path, shown)
    _check_voxels(shown, image)
    return image


def _read_file(path: Path, shown: PathLike) -> sitk.Image:
    if not os.access(path, os.R_OK):
        raise InputError(shown, "is not readable (permission denied)")
    if path.stat().st_size == 0:
        raise InputError(shown, "is empty (0 bytes)")
    ext = full_extension(path, INPUT_EXTENSIONS + _DICOM_FILE_EXTENSIONS)
    if ext in _DICOM_FILE_EXTENSIONS or (ext not in INPUT_EXTENSIONS and _looks_like_dicom(path)):
        return _read_dicom_file_series(path, shown)
    if ext not in INPUT_EXTENSIONS:
        raise InputError(shown, f"has an unsupported file type '{ext or '(none)'}'; use {_SUPPORTED_TEXT}")
    fmt = _FORMAT_NAMES[ext]
    if fmt == "NIfTI":
        _scan_nifti(path, shown)

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        with _captured_stderr(path):
            reader.ReadImageInformation()
    except RuntimeError as error:
        logger.debug("%s: ReadImageInformation failed: %s", path, error)
        raise InputError(shown, f"cannot be read as a {fmt} image (not a {fmt} file, or its header "
                                "is corrupt)") from None
    size = reader.GetSize()
    _check_shape(shown, reader.GetDimension(), size, reader.GetNumberOfComponents(), reader.GetPixelID())
    try:
        with _captured_stderr(path):
            image = reader.Execute()
    except RuntimeError as error:
        logger.debug("%s: reading voxels failed: %s", path, error)
        detail = " or its data file is missing" if ext in (".mhd", ".nhdr") else ""
        raise InputError(shown, f"is truncated or corrupt{detail}: the voxel data could not be read") from None
    if image.GetDimension() == 4:
        # A 4D file holding one volume (some converters write t=1): the 3D volume is the CT.
        logger.info("%s: 4D image with a single volume; using it as 3D", shown)
        image = image[:, :, :, 0]
    return image


def _looks_like_dicom(path: Path) -> bool:
    """DICOM Part 10 files carry "DICM" after a 128-byte preamble (often with no extension)."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _read_dicom_folder(folder: Path, shown: PathLike) -> sitk.Image:
    if not os.access(folder, os.R_OK | os.X_OK):
        raise InputError(shown, "is a folder that cannot be read (permission denied)")
    with _quiet_itk():  # "No Series were found" would go to stderr; we say it better below
        series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series_ids:
        subfolders = any(p.is_dir() for p in folder.iterdir())
        hint = (" (sub-folders are not searched: give the folder that holds the DICOM files)"
                if subfolders else "")
        raise InputError(shown, f"is a folder without a DICOM series{hint}; give a DICOM series folder or "
                                "an image file (.nii.gz, .nrrd, .mha)")
    files = {sid: sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), sid) for sid in series_ids}
    # Deterministic choice: most files, ties broken by series UID.
    chosen = max(sorted(files), key=lambda sid: len(files[sid]))
    if len(files) > 1:
        others = ", ".join(f"{sid} ({len(files[sid])} files)" for sid in sorted(files) if sid != chosen)
        logger.warning("%s: %d DICOM series found; using %s (%d files), the one with the most files; "
                       "ignored: %s", shown, len(files), chosen, len(files[chosen]), others)
    return _read_dicom_files(files[chosen], shown)


def _read_dicom_file_series(path: Path, shown: PathLike) -> sitk.Image:
    """One DICOM file given: read every file of its series from the same folder."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        logger.debug("%s: DICOM header unreadable: %s", path, error)
        raise InputError(shown, "cannot be read as a DICOM file (corrupt or not DICOM)") from None
    series_uid = reader.GetMetaData("0020|000e").strip() if reader.HasMetaDataKey("0020|000e") else ""
    files: Sequence[str] = ()
    if series_uid:
        with _quiet_itk():
            files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path.parent), series_uid)
    if not files:
        files = (str(path),)
    logger.info("%s: reading its DICOM series (%d files in %s)", shown, len(files), path.parent)
    return _read_dicom_files(files, shown)


def _read_dicom_files(files: Sequence[str], shown: PathLike) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(files))
    reader.MetaDataDictionaryArrayUpdateOn()  # slice positions, to check the spacing below
    try:
        # ITK's "non uniform sampling" warning and GDCM's messages: we raise a clear error instead.
        with _quiet_itk(), _captured_stderr(shown):
            image = reader.Execute()
    except RuntimeError as error:
        logger.debug("%s: DICOM series read failed: %s", shown, error)
        raise InputError(shown, f"DICOM series ({len(files)} files) could not be read "
                                "(corrupt, compressed with an unsupported codec, or not images)") from None
    _check_shape(shown, image.GetDimension(), image.GetSize(), image.GetNumberOfComponentsPerPixel(),
                 image.GetPixelID())
    _check_dicom_slice_positions(reader, image, shown)
    return image


def _check_dicom_slice_positions(reader: sitk.ImageSeriesReader, image: sitk.Image, shown: PathLike) -> None:
    """A series with missing or duplicated slices cannot be put on a regular 3D grid correctly."""
    n = len(reader.GetFileNames())
    if n < 3 or image.GetSize()[2] != n:  # multi-frame files: positions are per frame, not per file
        return
    normal = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)[:, 2]
    positions = []
    for i in range(n):
        if not reader.HasMetaDataKey(i, "0020|0032"):
            return
        try:
            positions.append([float(v) for v in reader.GetMetaData(i, "0020|0032").split("\\")])
        except ValueError:
            return
    depth = np.asarray(positions) @ normal
    gaps = np.abs(np.diff(depth))
    if np.any(gaps < 1e-3):
        raise InputError(shown, "DICOM series has several slices at the same position "
                                "(duplicates, or two series mixed in one folder)")
    median = float(np.median(gaps))
    if (gaps.max() - gaps.min()) > _DICOM_GAP_TOLERANCE * median:
        raise InputError(shown, f"DICOM series has unevenly spaced slices (gaps from {gaps.min():.3g} to "
                                f"{gaps.max():.3g} mm; missing slices?); a regular 3D grid is required")


def check_ct_like(image: sitk.Image, path: PathLike | None = None) -> list[str]:
    """Plausibility warnings (not errors) for a volume that passed ``read_ct``.

    Returns one-line strings, each ``"<path>: <problem>"`` (just the problem when `path` is
    None). Empty when the volume looks like a CT in Hounsfield units.
    """
    stats = sitk.MinimumMaximumImageFilter()
    stats.Execute(image)
    low, high = stats.GetMinimum(), stats.GetMaximum()
    problems = []
    if low >= 0 and high > 1000:
        problems.append(f"values range from {low:g} to {high:g}, none negative: looks like raw scanner "
                        "values without the rescale to Hounsfield units (air should be about -1000)")
    elif low > -200:
        problems.append(f"lowest value is {low:g}: does not look like CT in Hounsfield units "
                        "(air should be about -1000); MR or an already-normalised image?")
    elif high < 100:
        problems.append(f"highest value is {high:g}: does not look like CT in Hounsfield units "
                        "(soft tissue is 0-100, bone several hundred)")
    spacing = image.GetSpacing()
    if max(spacing) > 10.0:
        problems.append(f"voxel spacing {', '.join(f'{s:g}' for s in spacing)} mm has an axis above 10 mm; "
                        "the segmentation will be coarse")
    if min(spacing) < 0.1:
        problems.append(f"voxel spacing {', '.join(f'{s:g}' for s in spacing)} mm has an axis below 0.1 mm; "
                        "is the spacing stored in mm?")
    return [problem if path is None else f"{os.fspath(path)}: {problem}" for problem in problems]


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------

