"""imageio: validating CT reader (files and DICOM series), output path checks, atomic writes."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from AttentionUNetSegmentLib.core.errors import InputError
from AttentionUNetSegmentLib.core.labels import PANCREAS
from AttentionUNetSegmentLib.files.reading import check_ct_like, read_ct
from AttentionUNetSegmentLib.service.export import write_labelmap
from AttentionUNetSegmentLib.files.writing import (
    atomic_output,
    check_output_path,
    full_extension,
    write_image,
)


@pytest.fixture(scope="module")
def ct(real_ct_path) -> sitk.Image:
    return sitk.ReadImage(str(real_ct_path))


def assert_same_image(a: sitk.Image, b: sitk.Image, atol_mm: float = 1e-4) -> None:
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=atol_mm)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b))


def write_dicom_series(image: sitk.Image, folder: Path, series_uid: str, slices=None) -> Path:
    """Write a 3D image as one CT DICOM file per slice, with the geometry tags readers use."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()  # otherwise GDCM invents a new series UID per file
    d = image.GetDirection()
    orientation = "\\".join(f"{v:.6f}" for v in (d[0], d[3], d[6], d[1], d[4], d[7]))
    spacing = image.GetSpacing()
    for i in range(image.GetDepth()) if slices is None else slices:
        plane = image[:, :, i]
        position = image.TransformIndexToPhysicalPoint((0, 0, i))
        tags = {
            "0008|0016": "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
            "0008|0018": f"{series_uid}.{i + 1}",
            "0008|0060": "CT",
            "0020|000d": f"{series_uid}.0",
            "0020|000e": series_uid,
            "0020|0013": str(i + 1),
            "0020|0032": "\\".join(f"{v:.6f}" for v in position),
            "0020|0037": orientation,
            "0028|0030": f"{spacing[1]:.6f}\\{spacing[0]:.6f}",
            "0018|0050": f"{spacing[2]:.6f}",
        }
        for key, value in tags.items():
            plane.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"slice{i:03d}.dcm"))
        writer.Execute(plane)
    return folder


# ------------------------------------------------------------------------------ reading

def test_real_ct_is_returned_as_stored(real_ct_path, ct):
    image = read_ct(real_ct_path)
    assert image.GetPixelID() == sitk.sitkInt16  # nothing cast: the caller decides
    assert image.GetSize() == (122, 101, 30)
    assert_same_image(image, ct)
    assert check_ct_like(image, real_ct_path) == []


@pytest.mark.parametrize("name", ["ct.nrrd", "ct.mha", "ct.nii", "ct.mhd", "CT.NII.GZ"])
def test_converted_copies_read_identically(name, ct, tmp_path):
    path = tmp_path / name.lower()
    sitk.WriteImage(ct, str(path), useCompression=True)
    path = path.rename(tmp_path / name)  # upper-case extensions from Windows tools read too
    assert_same_image(read_ct(path), ct)


def test_dicom_series_folder_and_single_file(ct, tmp_path):
    folder = write_dicom_series(ct, tmp_path / "series", "1.2.826.0.1.3680043.2.1125.7.1")
    image = read_ct(folder)
    assert_same_image(sitk.Cast(image, sitk.sitkInt16), ct, atol_mm=1e-3)
    # One file of the series means the whole series (what a user picking a file expects).
    assert_same_image(sitk.Cast(read_ct(folder / "slice007.dcm"), sitk.sitkInt16), ct, atol_mm=1e-3)


def test_dicom_folder_with_two_series_takes_the_larger(ct, tmp_path, caplog):
    folder = tmp_path / "mixed"
    write_dicom_series(ct, folder, "1.2.826.0.1.3680043.2.1125.7.2")
    # A 5-slice second series in the same folder (a scout or a reformat, as PACS exports mix them).
    write_dicom_series(ct[:, :, 10:15], tmp_path / "other", "1.2.826.0.1.3680043.2.1125.7.3")
    for f in (tmp_path / "other").iterdir():
        f.rename(folder / f"b_{f.name}")
    with caplog.at_level(logging.WARNING):
        image = read_ct(folder)
    assert image.GetSize() == ct.GetSize()
    assert "2 DICOM series" in caplog.text and "7.2" in caplog.text


def test_dicom_series_with_a_missing_slice_is_refused(ct, tmp_path):
    folder = write_dicom_series(ct, tmp_path / "gap", "1.2.826.0.1.3680043.2.1125.7.4",
                                slices=[i for i in range(ct.GetDepth()) if i != 12])
    with pytest.raises(InputError, match="unevenly spaced"):
        read_ct(folder)


def test_4d_file_with_one_volume_is_accepted(ct, tmp_path):
    path = tmp_path / "one.nii.gz"
    sitk.WriteImage(sitk.JoinSeries([ct]), str(path))
    image = read_ct(path)
    assert image.GetDimension() == 3
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(image), sitk.GetArrayViewFromImage(ct))


def _write(array: np.ndarray, path: Path, vector: bool = False) -> Path:
    sitk.WriteImage(sitk.GetImageFromArray(array, isVector=vector), str(path))
    return path


def _bad_input(case: str, tmp_path: Path, real_ct_path: Path) -> tuple[Path, str]:
    rng = np.random.default_rng(0)
    volume = rng.normal(0, 300, (8, 9, 10)).astype(np.float32)
    data = real_ct_path.read_bytes()
    if case == "missing":
        return tmp_path / "nope.nii.gz", "does not exist"
    if case == "random_bytes":
        (tmp_path / "random.nrrd").write_bytes(rng.bytes(4000))
        return tmp_path / "random.nrrd", "cannot be read as a NRRD image"
    if case == "corrupt_gzip":
        (tmp_path / "corrupt.nii.gz").write_bytes(data[:200] + rng.bytes(4000) + data[4200:])
        return tmp_path / "corrupt.nii.gz", "corrupt"
    if case == "empty":
        (tmp_path / "empty.mha").write_bytes(b"")
        return tmp_path / "empty.mha", "empty"
    if case == "truncated_gz":
        (tmp_path / "half.nii.gz").write_bytes(data[: len(data) // 2])
        return tmp_path / "half.nii.gz", "truncated"
    if case == "truncated_nii":
        path = tmp_path / "raw.nii"
        sitk.WriteImage(sitk.ReadImage(str(real_ct_path)), str(path))
        path.write_bytes(path.read_bytes()[:-1000])
        return path, "truncated"
    if case == "truncated_nrrd":
        path = tmp_path / "cut.nrrd"
        sitk.WriteImage(sitk.ReadImage(str(real_ct_path)), str(path), useCompression=True)
        path.write_bytes(path.read_bytes()[:-5000])
        return path, "truncated or corrupt"
    if case == "truncated_mha":
        path = tmp_path / "cut.mha"
        sitk.WriteImage(sitk.GetImageFromArray(volume), str(path), useCompression=True)
        path.write_bytes(path.read_bytes()[:-500])
        return path, "truncated or corrupt"
    if case == "2d":
        return _write(volume[0], tmp_path / "slice.nii.gz"), "is a 2D image"
    if case == "one_slice":
        return _write(volume[:1], tmp_path / "oneslice.nrrd"), "is a 2D image"
    if case == "4d":
        return _write(np.stack([volume] * 3), tmp_path / "four.nii.gz"), "4D"
    if case == "rgb":
        return _write(np.stack([volume] * 3, axis=-1), tmp_path / "rgb.mha", vector=True), "3 components"
    if case == "nan":
        volume[1, 2, 3] = np.nan
        return _write(volume, tmp_path / "nan.nii.gz"), "1 NaN voxel"
    if case == "nan_nii_f64":
        volume = volume.astype(np.float64)
        volume[0, 0, 0] = np.nan
        volume[-1, -1, -1] = -np.inf
        return _write(volume, tmp_path / "nan64.nii"), "1 NaN and 1 infinite voxels"
    if case == "inf":
        volume[1, 2, 3] = np.inf
        volume[2, 2, 3] = -np.inf
        return _write(volume, tmp_path / "inf.nrrd"), "2 infinite voxels"
    if case == "constant":
        return _write(np.full((8, 9, 10), -1000, np.int16), tmp_path / "flat.nii.gz"), "single value (-1000)"
    if case == "empty_folder":
        (tmp_path / "dicom").mkdir()
        return tmp_path / "dicom", "without a DICOM series"
    if case == "nested_folder":
        (tmp_path / "patient" / "study").mkdir(parents=True)
        return tmp_path / "patient", "sub-folders are not searched"
    if case == "unsupported":
        (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + rng.bytes(100))
        return tmp_path / "photo.png", "unsupported file type '.png'"
    raise AssertionError(case)


BAD_CASES = ["missing", "random_bytes", "corrupt_gzip", "empty", "truncated_gz", "truncated_nii",
             "truncated_nrrd", "truncated_mha", "2d", "one_slice", "4d", "rgb", "nan", "nan_nii_f64", "inf",
             "constant", "empty_folder", "nested_folder", "unsupported"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_is_one_clear_line_naming_the_file(case, tmp_path, real_ct_path, capfd):
    path, fragment = _bad_input(case, tmp_path, real_ct_path)
    capfd.readouterr()
    with pytest.raises(InputError) as raised:
        read_ct(path)
    # C++ readers print to descriptor 2 themselves (MetaIO, GDCM, ITK warnings): none may leak.
    assert capfd.readouterr().err == ""
    message = str(raised.value)
    assert message.startswith(f"{path}: "), message
    assert fragment in message, message
    assert "\n" not in message
    for noise in ("Traceback", "sitk::ERROR", ".cxx", "itk::", "ITK ERROR"):
        assert noise not in message, message
    assert not re.search(r"0x[0-9a-f]{6}", message), message  # C++ object addresses
    assert raised.value.__cause__ is None  # `from None`: no C++ text chained into the report


def test_empty_dicom_folder_prints_nothing_itself(tmp_path, capfd):
    """ITK's "No Series were found" warning goes straight to stderr; the one-line error replaces it."""
    with pytest.raises(InputError):
        read_ct(tmp_path)
    assert capfd.readouterr().err == ""


def test_check_ct_like_flags_non_hu_data(ct):
    assert check_ct_like(ct) == []
    raw = sitk.Cast(ct, sitk.sitkFloat32) + 1024.0  # rescale intercept not applied
    (warning,) = check_ct_like(raw, "raw.nii.gz")
    assert warning.startswith("raw.nii.gz: ") and "Hounsfield" in warning
    normalised = sitk.RescaleIntensity(sitk.Cast(ct, sitk.sitkFloat32), 0.0, 1.0)
    (warning,) = check_ct_like(normalised)
    assert "does not look like CT in Hounsfield units" in warning


# ------------------------------------------------------------------------------ output paths

def test_check_output_path_accepts_known_extensions(tmp_path):
    for name in ("a.nii.gz", "a.seg.nrrd", "a.nrrd", "a.mha", "A.NII.GZ"):
        assert check_output_path(tmp_path / name) == tmp_path / name
    assert check_output_path(tmp_path / "s.json", extensions=(".json",)) == tmp_path / "s.json"
    assert full_extension("x/pancreas.seg.nrrd") == ".seg.nrrd"
    assert full_extension("ct.v2.nii.gz") == ".nii.gz"


def test_check_output_path_refuses_overwriting_the_input(tmp_path, real_ct_path, monkeypatch):
    copy = tmp_path / "ct.nii.gz"
    copy.write_bytes(real_ct_path.read_bytes())
    link = tmp_path / "link.nii.gz"
    link.symlink_to(copy)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    for output in (copy, link, Path("../ct.nii.gz"), Path("..") / "sub" / ".." / "ct.nii.gz"):
        with pytest.raises(InputError, match="would overwrite the input CT"):
            check_output_path(output, inputs=[copy])
    with pytest.raises(InputError, match="would overwrite the input CT"):
        check_output_path(copy, inputs=["../link.nii.gz"])
    assert check_output_path(tmp_path / "seg.nii.gz", inputs=[copy])  # a different file is fine


@pytest.mark.parametrize("case", ["no_parent", "folder", "extension", "parent_is_file"])
def test_check_output_path_refuses_unwritable_targets(case, tmp_path):
    # Tests run as root, where chmod cannot make a folder unwritable: check the other cases.
    (tmp_path / "afile").write_text("x")
    path, fragment = {
        "no_parent": (tmp_path / "no" / "such" / "seg.nii.gz", "does not exist"),
        "folder": (tmp_path, "is a folder"),
        "extension": (tmp_path / "seg.png", "unsupported output type '.png'"),
        "parent_is_file": (tmp_path / "afile" / "seg.nii.gz", "is not a folder"),
    }[case]
    with pytest.raises(InputError) as raised:
        check_output_path(path)
    assert str(raised.value).startswith(f"{path}: ") and fragment in str(raised.value)


# ------------------------------------------------------------------------------ atomic writes

def test_atomic_output_success_renames_and_cleans_up(tmp_path):
    target = tmp_path / "out.seg.nrrd"
    with atomic_output(target) as temporary:
        assert temporary.name == "output.seg.nrrd"  # writers choose the format from the extension
        assert temporary.parent.parent == tmp_path  # same filesystem: os.replace is atomic
        assert not target.exists()
        temporary.write_text("done")
    assert target.read_text() == "done"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.seg.nrrd"]


@pytest.mark.parametrize("exception", [RuntimeError, KeyboardInterrupt])
def test_atomic_output_failure_leaves_existing_file_and_no_debris(exception, tmp_path):
    target = tmp_path / "out.nii.gz"
    target.write_text("previous result")
    with pytest.raises(exception):
        with atomic_output(target) as temporary:
            temporary.write_text("half written")
            raise exception("interrupted")
    assert target.read_text() == "previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nii.gz"]


def test_atomic_output_without_a_file_written_is_an_error(tmp_path):
    with pytest.raises(RuntimeError, match="nothing was written"):
        with atomic_output(tmp_path / "x.nrrd"):
            pass
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_in_a_missing_folder_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        with atomic_output(tmp_path / "missing" / "x.nrrd"):
            pass


@pytest.mark.parametrize("name", ["seg.nii.gz.nii.gz", "SEG.NII.GZ", "x.MHA", "y.Mhd", "s.nrrd.nrrd",
                                  "ünï code.nii", "a" * 240 + ".nii.gz"])
def test_write_image_under_odd_names(name, ct, tmp_path):
    """ITK's writers mangle such names when they write them directly (seg.nii.gz.nii.gz ->
    seg.nii.gz, SEG.NII.GZ refused, x.MHA -> x.mhd + x.raw); through atomic_output they land
    under exactly the name asked for, nested in another atomic_output too (as segment does)."""
    target = tmp_path / name
    with atomic_output(target) as outer:
        write_image(ct, outer)
    companions = {"y.Mhd": ["y.zraw"]}.get(name, [])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name] + companions)
    if name != "y.Mhd":  # a copy under a lower-case name reads back (the .Mhd header names y.zraw)
        copy = tmp_path / ("copy" + full_extension(name.lower()))
        copy.write_bytes(target.read_bytes())
        assert_same_image(sitk.ReadImage(str(copy)), ct)
    else:
        assert "y.zraw" in target.read_text(errors="replace")


def test_output_name_over_255_bytes_is_refused_before_work(tmp_path):
    with pytest.raises(InputError, match="longer than 255 bytes"):
        check_output_path(tmp_path / ("é" * 130 + ".nii.gz"))


def test_write_image_formats_with_companion_files(ct, tmp_path):
    for name in ("ct.mhd", "ct.nhdr", "ct.nii.gz"):
        write_image(ct, tmp_path / name)
        assert_same_image(sitk.ReadImage(str(tmp_path / name)), ct)
    # The header must name the final data file, not a temporary one.
    assert "ct.zraw" in (tmp_path / "ct.mhd").read_text(errors="replace")
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    written = sitk.ReadImage(str(tmp_path / "ct.nii.gz"))
    assert "ITK_FileNotes" not in written.GetMetaDataKeys() or written.GetMetaData("ITK_FileNotes") == ""


def test_write_labelmap_dispatches_on_the_extension(real_labels_path, tmp_path):
    labels = sitk.ReadImage(str(real_labels_path))
    pancreas = sitk.Cast(labels == 7, sitk.sitkInt32)  # pipeline may hand over any integer type
    write_labelmap(pancreas, tmp_path / "p.nii.gz", [PANCREAS])
    plain = sitk.ReadImage(str(tmp_path / "p.nii.gz"))
    assert plain.GetPixelID() == sitk.sitkUInt8
    assert int(sitk.GetArrayViewFromImage(plain).sum()) == 644
    write_labelmap(pancreas, tmp_path / "p.seg.nrrd", [PANCREAS])
    assert "Segment0_Name:=Pancreas" in (tmp_path / "p.seg.nrrd").read_bytes()[:4000].decode("latin-1")
    with pytest.raises(ValueError, match="uint8"):
        write_labelmap(pancreas * 300, tmp_path / "big.nii.gz", [PANCREAS])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.nii.gz", "p.seg.nrrd"]
