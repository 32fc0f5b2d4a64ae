"""Writing outputs atomically: nothing appears under the name a user asked for until it is complete.

Outputs are written to a temporary folder beside the target and moved into place only when
complete, so an interrupted run never leaves a partial file; output names are checked before
any work is done.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..core.errors import InputError, PathLike
from .formats import IMAGE_OUTPUT_EXTENSIONS, full_extension

logger = logging.getLogger(__name__)
def check_output_path(path: PathLike, inputs: Iterable[PathLike] = (),
                      extensions: Sequence[str] = IMAGE_OUTPUT_EXTENSIONS) -> Path:
    """Check, before any work, that `path` can be written; return it as a Path.

    The parent folder must exist and be writable, the name must end with one of `extensions`
    (case-insensitive; compound ones such as ``.seg.nrrd`` count), `path` must not be a folder,
    and it must not be the same file as any of `inputs` (also through links or other spellings).
    """
    shown = path
    path = Path(path).expanduser()
    if len(os.fsencode(path.name)) > 255:
        raise InputError(shown, "cannot be written: the file name is longer than 255 bytes")
    if path.is_dir():
        raise InputError(shown, "is a folder; an output file name is required")
    ext = full_extension(path, tuple(extensions))
    if ext not in [e.lower() for e in extensions]:
        raise InputError(shown, f"has an unsupported output type '{ext or '(none)'}'; use one of "
                                f"{', '.join(extensions)}")
    parent = path.parent
    if not parent.is_dir():
        what = "is not a folder" if parent.exists() else "does not exist"
        raise InputError(shown, f"cannot be written: folder '{parent}' {what}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(shown, f"cannot be written: folder '{parent}' is not writable")
    for source in inputs:
        if _same_file(path, Path(source).expanduser()):
            raise InputError(shown, "would overwrite the input CT; choose another output name")
    return path


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)  # hard links, symlinks, bind mounts
    except OSError:
        pass
    return a.resolve() == b.resolve()


#: Formats whose header names a companion data file (.mhd -> .raw/.zraw, .nhdr -> .raw/.raw.gz):
#: their temporary file must carry the final stem, since the header records the companion's name.
_HEADER_WITH_COMPANION = (".mhd", ".nhdr")
#: Longest part of the target's name used in the temporary folder's name (file names are limited
#: to 255 bytes, and the folder adds a prefix and a random suffix).
_TEMPORARY_NAME_CHARS = 60


def _temporary_name(final: Path) -> str:
    """The name written inside the private folder: one the writers handle, same format as `final`.

    Writers choose the format from the extension, and some mangle odd names: ITK's NIfTI writer
    turns ``seg.nii.gz.nii.gz`` into ``seg.nii.gz``, rejects ``SEG.NII.GZ``, and its MetaImage
    writer turns ``x.MHA`` into ``x.mhd`` + ``x.raw``. So a self-contained file is written as
    ``output<ext>`` (extension in lower case) and renamed; a header with a companion keeps its stem.
    """
    ext = full_extension(final)
    stem = final.name[: len(final.name) - len(ext)] if ext else final.name
    if ext.lower() in _HEADER_WITH_COMPANION:
        return stem + ext.lower()
    return "output" + ext.lower()


@contextlib.contextmanager
def atomic_output(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path to write to; it replaces `path` only if the block succeeds.

    The temporary path lies in a private folder beside the target (``<folder>/.<name>.tmp-<random>/``)
    and has the target's format (see ``_temporary_name``), so writers that pick the format from the
    extension (``.seg.nrrd``, ``.nii.gz``) or record companion file names (``.mhd`` -> ``.zraw``,
    ``.nhdr`` -> ``.raw.gz``) do the right thing. On success every file written there is moved
    next to the target (companions first, the named file last, each by atomic ``os.replace``);
    on any exception, KeyboardInterrupt included, the folder is deleted and an existing file at
    `path` is left untouched. Nesting is fine (an inner call works inside the outer folder).
    """
    final = Path(path).expanduser()
    parent = final.parent
    try:
        workdir = Path(tempfile.mkdtemp(prefix=f".{final.name[:_TEMPORARY_NAME_CHARS]}.tmp-", dir=parent))
    except OSError as error:
        reason = "does not exist" if isinstance(error, FileNotFoundError) else "is not writable"
        raise InputError(path, f"cannot be written: folder '{parent}' {reason}") from None
    temporary = workdir / _temporary_name(final)
    try:
        yield temporary
        if not temporary.exists():
            raise RuntimeError(f"{final}: nothing was written to the temporary file {temporary}")
        for companion in sorted(workdir.iterdir()):
            if companion != temporary and companion.is_file():
                os.replace(companion, parent / companion.name)
        try:
            os.replace(temporary, final)
        except OSError as error:
            raise InputError(path, f"cannot be written ({error.strerror or error})") from None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _without_metadata(image: sitk.Image) -> sitk.Image:
    """Copy (cheap, copy-on-write) without the source file's header fields.

    Outputs are derived volumes: NIfTI qform notes or DICOM tags of the input do not describe
    them, and MetaImage writers print a warning for every field they cannot store.
    """
    keys = image.GetMetaDataKeys()
    if not keys:
        return image
    copy = sitk.Image(image)
    for key in keys:
        copy.EraseMetaData(key)
    return copy


def write_image(image: sitk.Image, path: PathLike, compress: bool = True) -> None:
    """Write `image` atomically; the format follows the extension (.nii.gz, .nrrd, .mha, ...)."""
    out = _without_metadata(image)
    with atomic_output(path) as temporary:
        try:
            sitk.WriteImage(out, str(temporary), useCompression=compress)
        except RuntimeError as error:
            logger.debug("%s: write failed: %s", path, error)
            raise InputError(path, f"could not be written as {full_extension(path)} "
                                   f"({out.GetPixelIDTypeAsString()} voxels; disk full or type not "
                                   "supported by this format?)") from None


def labelmap_as_uint8(labelmap: sitk.Image) -> sitk.Image:
    """The labelmap as uint8 (what Slicer and most viewers expect); ValueError if values don't fit."""
    if labelmap.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError("a labelmap must have one component per voxel")
    if labelmap.GetPixelID() == sitk.sitkUInt8:
        return labelmap
    stats = sitk.MinimumMaximumImageFilter()
    stats.Execute(labelmap)
    low, high = stats.GetMinimum(), stats.GetMaximum()
    if low < 0 or high > 255:
        raise ValueError(f"labelmap values {low:g}..{high:g} do not fit in uint8")
    array = sitk.GetArrayViewFromImage(labelmap)
    if np.issubdtype(array.dtype, np.floating) and not np.array_equal(array, np.round(array)):
        raise ValueError("labelmap has non-integer values")
    return sitk.Cast(labelmap, sitk.sitkUInt8)


