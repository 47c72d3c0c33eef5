from __future__ import annotations

import cv2
import numpy as np
import pydicom
import pytest
import tifffile
from pydicom import examples

from medals.data.io import file_size, image_size, read_image, read_mask
from medals.errors import MedalsError


def _rgb(h: int = 20, w: int = 30) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_png_is_rgb_in_rgb_order(tmp_path):
    rgb = _rgb()
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out = read_image(str(path))
    assert out.dtype == np.uint8 and out.shape == (20, 30, 3)
    np.testing.assert_array_equal(out, rgb)
    assert image_size(str(path)) == (20, 30)


def test_jpeg_colour_order(tmp_path):
    rgb = np.zeros((16, 24, 3), np.uint8)
    rgb[..., 0] = 250  # pure red
    path = tmp_path / "a.JPG"
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out = read_image(str(path))
    assert out.shape == (16, 24, 3)
    assert out[..., 0].mean() > 240 and out[..., 2].mean() < 10
    assert image_size(str(path)) == (16, 24)


def test_grayscale_png_has_one_channel_and_rgba_keeps_alpha(tmp_path):
    gray = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10)
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    out = read_image(str(tmp_path / "g.png"))
    assert out.shape == (12, 10, 1)
    np.testing.assert_array_equal(out[..., 0], gray)

    rgba = np.dstack([_rgb(12, 10), np.full((12, 10), 7, np.uint8)])
    cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    np.testing.assert_array_equal(read_image(str(tmp_path / "a.png")), rgba)


def test_16bit_tiff_is_min_max_scaled(tmp_path):
    image = np.linspace(100, 1100, 40 * 50).reshape(40, 50).astype(np.uint16)
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, image)
    out = read_image(str(path))
    assert out.dtype == np.uint8 and out.shape == (40, 50, 1)
    assert out.min() == 0 and out.max() == 255
    expected = np.rint((image.astype(np.float64) - 100) * 255 / 1000).astype(np.uint8)
    np.testing.assert_array_equal(out[..., 0], expected)
    assert image_size(str(path)) == (40, 50)


def test_float_tiff_and_constant_image(tmp_path):
    image = np.array([[-1.0, 0.0], [1.0, np.nan]], np.float32)
    tifffile.imwrite(tmp_path / "f.tiff", image)
    out = read_image(str(tmp_path / "f.tiff"))[..., 0]
    np.testing.assert_array_equal(out, [[0, 128], [255, 0]])
    tifffile.imwrite(tmp_path / "c.tif", np.full((5, 6), 4000, np.uint16))
    assert read_image(str(tmp_path / "c.tif")).max() == 0


def test_planar_tiff_is_channels_last(tmp_path):
    image = np.zeros((3, 20, 30), np.uint8)
    image[1] = 9
    tifffile.imwrite(tmp_path / "p.tif", image, photometric="minisblack")
    out = read_image(str(tmp_path / "p.tif"))
    assert out.shape == (20, 30, 3) and out[..., 1].max() == 9 and out[..., 0].max() == 0
    assert image_size(str(tmp_path / "p.tif")) == (20, 30)


def test_16bit_png_is_scaled(tmp_path):
    image = np.array([[0, 30000], [60000, 65535]], np.uint16)
    cv2.imwrite(str(tmp_path / "a.png"), image)
    out = read_image(str(tmp_path / "a.png"))
    np.testing.assert_array_equal(out[..., 0], [[0, 117], [233, 255]])


def test_multi_file_channels_are_stacked_in_order(tmp_path):
    planes = [np.full((8, 9), 10 * (i + 1), np.uint8) for i in range(4)]
    paths = []
    for name, plane in zip(["red", "green", "blue", "yellow"], planes, strict=True):
        path = tmp_path / f"x_{name}.png"
        cv2.imwrite(str(path), plane)
        paths.append(str(path))
    joined = "|".join(paths)
    out = read_image(joined)
    assert out.shape == (8, 9, 4)
    assert out[0, 0].tolist() == [10, 20, 30, 40]
    assert image_size(joined) == (8, 9)
    assert file_size(joined) == sum(
        (tmp_path / f"x_{n}.png").stat().st_size for n in ["red", "green", "blue", "yellow"]
    )

    cv2.imwrite(paths[2], np.zeros((8, 7), np.uint8))
    with pytest.raises(MedalsError, match="differ in size") as err:
        read_image(joined)
    assert paths[2] in str(err.value)
    with pytest.raises(MedalsError, match="differ in size"):
        image_size(joined)


def test_real_ct_dicom(tmp_path):
    path = examples.get_path("ct")
    out = read_image(str(path))
    assert out.shape == (128, 128, 1) and out.dtype == np.uint8
    assert out.min() == 0 and out.max() == 255
    raw = examples.ct.pixel_array.astype(np.float64)
    expected = np.rint((raw - raw.min()) * 255 / (raw.max() - raw.min())).astype(np.uint8)
    np.testing.assert_array_equal(out[..., 0], expected)
    assert image_size(str(path)) == (128, 128)


def test_real_mr_dicom_and_monochrome1_is_inverted(tmp_path):
    ds = examples.mr
    path = tmp_path / "mr.dcm"
    ds.save_as(path)
    out = read_image(str(path))
    assert out.shape == (64, 64, 1) and out.min() == 0 and out.max() == 255
    assert image_size(str(path)) == (64, 64)

    ds = pydicom.dcmread(path)
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "mono1.dcm")
    np.testing.assert_array_equal(read_image(str(tmp_path / "mono1.dcm")), 255 - out)


def test_dicom_rescale_slope_is_applied(tmp_path):
    ds = pydicom.dcmread(examples.get_path("ct"))
    plain = read_image(str(examples.get_path("ct")))
    ds.RescaleSlope = -2
    ds.save_as(tmp_path / "neg.dcm")
    # A negative slope turns the image over: min-max of (slope * x + intercept) is 255 - min-max of x.
    np.testing.assert_array_equal(read_image(str(tmp_path / "neg.dcm")), 255 - plain)


def test_npy_is_returned_as_is(tmp_path):
    array = _rgb(6, 7)
    np.save(tmp_path / "c.npy", array)
    out = read_image(str(tmp_path / "c.npy"))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, array)
    assert image_size(str(tmp_path / "c.npy")) == (6, 7)


def test_missing_file(tmp_path):
    path = str(tmp_path / "nope.png")
    with pytest.raises(MedalsError, match=f"image file {path} does not exist"):
        read_image(path)
    with pytest.raises(MedalsError, match="does not exist"):
        image_size(path)


@pytest.mark.parametrize("name", ["bad.png", "bad.jpg", "bad.tif", "bad.dcm", "bad.npy"])
def test_corrupt_files(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(MedalsError, match="corrupt or unsupported") as err:
        read_image(str(path))
    assert f"cannot read image {path}" in str(err.value)
    with pytest.raises(MedalsError, match="corrupt or unsupported"):
        image_size(str(path))


def test_unknown_extension(tmp_path):
    (tmp_path / "a.gif").write_bytes(b"GIF89a")
    with pytest.raises(MedalsError, match="unknown extension '.gif'"):
        read_image(str(tmp_path / "a.gif"))


def test_read_mask(tmp_path):
    mask = np.zeros((10, 12), np.uint8)
    mask[2:5, 3:7] = 3
    cv2.imwrite(str(tmp_path / "m.png"), mask)
    out = read_mask(str(tmp_path / "m.png"))
    assert out.dtype == bool and out.shape == (10, 12)
    np.testing.assert_array_equal(out, mask > 0)
    # Instance masks: every id counts, and an all-foreground mask stays foreground (no min-max here).
    tifffile.imwrite(tmp_path / "full.tif", np.full((4, 5), 7, np.uint16))
    assert read_mask(str(tmp_path / "full.tif")).all()
