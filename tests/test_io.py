"""Tests for restormer.io: every image is generated inside the test, nothing is committed."""

from __future__ import annotations

import errno
import io
import os
import stat
import struct
import tracemalloc
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image, ImageCms, ImageOps

from restormer.files import write_atomically
from restormer.io import (
    ImageData,
    ImageFileError,
    from_float,
    list_images,
    read_image,
    to_float,
    write_image,
)
from restormer.io import read as rio_read
from restormer.io import write as rio_write

# Pillow's bomb warning must never fire: read_image enforces its own limit.
pytestmark = pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")

H, W = 12, 16  # small, non-square, so transposes are visible

# --------------------------------------------------------------------------------------------
# helpers


def smooth(channels: int, dtype: type = np.uint8, seed: int = 0) -> np.ndarray:
    """A smooth H x W x C image (lossy codecs keep it close) with some random offset."""
    rng = np.random.default_rng(seed)
    max_value = 65535 if dtype == np.uint16 else 255
    y, x = np.mgrid[0:H, 0:W]
    planes = [(y * (3 + c) + x * (5 - c)) / (H * 3 + W * 5) for c in range(channels)]
    arr = np.stack(planes, axis=-1) * 0.9 + rng.uniform(0, 0.02, (H, W, channels))
    return np.round(arr * max_value).astype(dtype)


def noise(shape: tuple[int, ...], dtype: type = np.uint8, seed: int = 1) -> np.ndarray:
    """Random samples covering the full range (values > 255 for uint16)."""
    return np.random.default_rng(seed).integers(0, np.iinfo(dtype).max, shape, dtype=dtype)


def blocks(channels: int = 3) -> np.ndarray:
    """Asymmetric image of flat 4x4 blocks: survives JPEG almost exactly."""
    small = np.random.default_rng(7).integers(0, 256, (H // 4, W // 4, channels))
    return np.kron(small, np.ones((4, 4, 1))).astype(np.uint8)


def one_line(exc: pytest.ExceptionInfo[ImageFileError]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def png_chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of every chunk, checking each CRC."""
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    chunks, pos = [], 8
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, data = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", png[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + data)
        chunks.append((kind, data))
        pos += 12 + length
    return chunks


def insert_after_ihdr(png: bytes, chunk: bytes) -> bytes:
    """Insert ``chunk`` right after IHDR (signature 8 + IHDR 25 bytes): tRNS, eXIf, iCCP."""
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png[12:16] == b"IHDR"
    return png[:33] + chunk + png[33:]


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".tmp" in p.name)


@pytest.fixture(scope="module")
def srgb() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


# --------------------------------------------------------------------------------------------
# round trips through write_image -> read_image

LAYOUTS = {"gray": (1, False), "rgb": (3, False), "rgba": (3, True), "gray_alpha": (1, True)}


def sample(layout: str, dtype: type, lossless: bool) -> tuple[np.ndarray, np.ndarray | None]:
    channels, has_alpha = LAYOUTS[layout]
    if lossless:  # random samples over the full range, > 255 for 16 bits
        pixels, alpha = noise((H, W, channels), dtype, 3), noise((H, W), dtype, 4)
    else:  # smooth content, which lossy codecs keep close
        pixels, alpha = smooth(channels, dtype, 3), smooth(1, dtype, 4)[..., 0]
    return pixels, alpha if has_alpha else None


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_lossless_round_trip_is_exact(tmp_path, suffix, bits, layout):
    dtype = np.uint16 if bits == 16 else np.uint8
    pixels, alpha = sample(layout, dtype, lossless=True)
    out = write_image(tmp_path / f"x{suffix}", pixels, alpha=alpha)
    assert out == tmp_path / f"x{suffix}"
    got = read_image(out)
    assert got.format == {".png": "PNG", ".tif": "TIFF"}[suffix]
    assert got.bit_depth == bits
    assert got.pixels.dtype == dtype
    np.testing.assert_array_equal(got.pixels, pixels)
    if alpha is None:
        assert got.alpha is None
    else:
        np.testing.assert_array_equal(got.alpha, alpha)
    assert got.icc_profile is None


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("bits", [8, 16])
def test_bmp_round_trip_is_exact_8bit_and_drops_alpha(tmp_path, bits, layout):
    dtype = np.uint16 if bits == 16 else np.uint8
    pixels, alpha = sample(layout, dtype, lossless=True)
    got = read_image(write_image(tmp_path / "x.bmp", pixels, alpha=alpha))
    assert got.format == "BMP"
    assert got.pixels.dtype == np.uint8
    expected = pixels if bits == 8 else np.round(pixels / 257).astype(np.uint8)
    np.testing.assert_array_equal(got.pixels, expected)
    assert got.alpha is None


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("bits", [8, 16])
def test_jpeg_round_trip_is_close_and_drops_alpha(tmp_path, bits, layout):
    dtype = np.uint16 if bits == 16 else np.uint8
    pixels, alpha = sample(layout, dtype, lossless=False)
    got = read_image(write_image(tmp_path / "x.jpg", pixels, alpha=alpha))
    assert (got.format, got.pixels.dtype, got.alpha) == ("JPEG", np.uint8, None)
    assert got.pixels.shape == pixels.shape
    expected = pixels if bits == 8 else np.round(pixels / 257)
    assert np.abs(got.pixels.astype(float) - expected).mean() < 2.0


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("bits", [8, 16])
def test_webp_round_trip_is_close(tmp_path, bits, layout):
    dtype = np.uint16 if bits == 16 else np.uint8
    pixels, alpha = sample(layout, dtype, lossless=False)
    got = read_image(write_image(tmp_path / "x.webp", pixels, alpha=alpha))
    assert (got.format, got.pixels.dtype) == ("WEBP", np.uint8)
    assert got.pixels.shape == (H, W, 3)  # WebP has no gray mode: gray comes back as RGB
    scale = 1 if bits == 8 else 257
    expected = np.broadcast_to(pixels / scale, (H, W, 3))
    assert np.abs(got.pixels - expected).mean() < 3.0
    if alpha is None:
        assert got.alpha is None
    else:
        assert np.abs(got.alpha - alpha / scale).mean() < 3.0


def test_write_float_pixels_uses_from_float(tmp_path):
    x = np.linspace(-0.1, 1.1, H * W * 3).reshape(H, W, 3)
    for bits in (8, 16):
        got = read_image(write_image(tmp_path / f"f{bits}.png", x, bit_depth=bits))
        np.testing.assert_array_equal(got.pixels, from_float(x, bits))
    with pytest.raises(ValueError, match="bit_depth"):
        write_image(tmp_path / "f.png", x)


def test_write_converts_between_depths(tmp_path):
    x8 = noise((H, W, 3))
    got = read_image(write_image(tmp_path / "up.png", x8, bit_depth=16))
    np.testing.assert_array_equal(got.pixels, x8.astype(np.uint16) * 257)
    x16 = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    got = read_image(write_image(tmp_path / "down.png", x16, bit_depth=8))
    np.testing.assert_array_equal(got.pixels[..., 0], np.round(x16 / 257).astype(np.uint8))


def test_write_accepts_2d_gray_and_float_alpha(tmp_path):
    gray = noise((H, W))
    alpha = np.full((H, W), 0.5)
    got = read_image(write_image(tmp_path / "g.png", gray, alpha=alpha))
    np.testing.assert_array_equal(got.pixels[..., 0], gray)
    assert (got.alpha == 128).all()


@pytest.mark.parametrize(
    ("pixels", "kwargs", "match"),
    [
        (np.zeros((4, 4, 2), np.uint8), {}, "C 1 or 3"),
        (np.zeros((4, 4, 4), np.uint8), {}, "C 1 or 3"),
        (np.zeros((4,), np.uint8), {}, "H x W"),
        (np.zeros((4, 4), np.int32), {}, "uint8, uint16 or float"),
        (np.zeros((4, 4), np.uint8), {"alpha": np.zeros((3, 4), np.uint8)}, "alpha"),
        (np.zeros((4, 4), np.uint8), {"bit_depth": 12}, "bit_depth"),
        (np.zeros((4, 4), np.uint8), {"quality": 0}, "quality"),
    ],
)
def test_write_rejects_programming_errors_with_value_error(tmp_path, pixels, kwargs, match):
    with pytest.raises(ValueError, match=match) as excinfo:
        write_image(tmp_path / "x.png", pixels, **kwargs)
    assert not isinstance(excinfo.value, ImageFileError)
    assert list(tmp_path.iterdir()) == []


def test_non_ascii_path_round_trip(tmp_path):
    pixels = noise((H, W, 3), np.uint16)
    path = tmp_path / "ünïcødé 画像.png"
    np.testing.assert_array_equal(read_image(write_image(path, pixels)).pixels, pixels)


# --------------------------------------------------------------------------------------------
# reading files made by other tools


def test_16bit_colour_png_from_opencv_is_exact(tmp_path):
    rgb, alpha = noise((H, W, 3), np.uint16), noise((H, W), np.uint16, seed=2)
    cv2.imwrite(str(tmp_path / "rgb.png"), rgb[..., ::-1])
    cv2.imwrite(str(tmp_path / "rgba.png"), np.dstack([rgb[..., ::-1], alpha]))
    with Image.open(tmp_path / "rgb.png") as im:
        assert im.mode == "RGB"  # 8 bits per sample: why Pillow alone is not enough
    got = read_image(tmp_path / "rgb.png")
    assert got.pixels.max() > 255
    np.testing.assert_array_equal(got.pixels, rgb)
    got = read_image(tmp_path / "rgba.png")
    np.testing.assert_array_equal(got.pixels, rgb)
    np.testing.assert_array_equal(got.alpha, alpha)


def test_16bit_colour_tiff_from_opencv_and_tifffile_is_exact(tmp_path):
    rgb, alpha = noise((H, W, 3), np.uint16), noise((H, W), np.uint16, seed=2)
    cv2.imwrite(str(tmp_path / "lzw.tif"), rgb[..., ::-1])  # OpenCV writes LZW
    tifffile.imwrite(tmp_path / "rgba.tif", np.dstack([rgb, alpha]), extrasamples=["unassalpha"])
    planar = np.moveaxis(rgb, -1, 0)
    tifffile.imwrite(tmp_path / "planar.tif", planar, photometric="rgb", planarconfig="separate")
    for name in ("lzw.tif", "planar.tif"):
        got = read_image(tmp_path / name)
        assert got.pixels.max() > 255
        np.testing.assert_array_equal(got.pixels, rgb)
    got = read_image(tmp_path / "rgba.tif")
    np.testing.assert_array_equal(got.pixels, rgb)
    np.testing.assert_array_equal(got.alpha, alpha)


def test_16bit_gray_and_gray_alpha_tiff(tmp_path):
    gray, alpha = noise((H, W), np.uint16), noise((H, W), np.uint16, seed=2)
    tifffile.imwrite(tmp_path / "g.tif", gray)
    tifffile.imwrite(
        tmp_path / "ga.tif",
        np.dstack([gray, alpha]),
        photometric="minisblack",
        extrasamples=["unassalpha"],
        planarconfig="contig",
    )
    np.testing.assert_array_equal(read_image(tmp_path / "g.tif").pixels[..., 0], gray)
    got = read_image(tmp_path / "ga.tif")  # Pillow cannot open this one
    np.testing.assert_array_equal(got.pixels[..., 0], gray)
    np.testing.assert_array_equal(got.alpha, alpha)


def test_16bit_png_colour_key_becomes_alpha(tmp_path):
    rgb = noise((H, W, 3), np.uint16)
    rgb[0, 0] = (5, 6, 7)
    png = cv2.imencode(".png", rgb[..., ::-1])[1].tobytes()
    trns = rio_write._png_chunk(b"tRNS", struct.pack(">HHH", 5, 6, 7))
    (tmp_path / "key.png").write_bytes(insert_after_ihdr(png, trns))
    got = read_image(tmp_path / "key.png")
    np.testing.assert_array_equal(got.pixels, rgb)
    assert got.alpha[0, 0] == 0
    assert (got.alpha.ravel()[1:] == 65535).all()


def test_palette_with_and_without_transparency(tmp_path):
    base = Image.fromarray(blocks()).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    base.save(tmp_path / "p.png")
    base.save(tmp_path / "pt.png", transparency=0)
    got = read_image(tmp_path / "p.png")
    assert got.alpha is None
    np.testing.assert_array_equal(got.pixels, np.asarray(base.convert("RGB")))
    got = read_image(tmp_path / "pt.png")
    with Image.open(tmp_path / "pt.png") as im:
        rgba = np.asarray(im.convert("RGBA"))
    np.testing.assert_array_equal(got.pixels, rgba[..., :3])
    np.testing.assert_array_equal(got.alpha, rgba[..., 3])
    assert (got.alpha == 0).any() and (got.alpha == 255).any()


def test_gray_colour_key_becomes_alpha(tmp_path):
    gray = np.arange(H * W, dtype=np.uint8).reshape(H, W)
    Image.fromarray(gray).save(tmp_path / "l.png", transparency=3)
    got = read_image(tmp_path / "l.png")
    np.testing.assert_array_equal(got.pixels[..., 0], gray)
    np.testing.assert_array_equal(got.alpha, np.where(gray == 3, 0, 255))


def test_one_bit_becomes_0_255_gray(tmp_path):
    bits = np.random.default_rng(0).integers(0, 2, (H, W)).astype(bool)
    Image.fromarray(bits).save(tmp_path / "b.png")
    Image.fromarray(bits).save(tmp_path / "b.tif")
    for name in ("b.png", "b.tif"):
        got = read_image(tmp_path / name)
        assert got.pixels.dtype == np.uint8 and got.pixels.shape == (H, W, 1)
        np.testing.assert_array_equal(got.pixels[..., 0], np.where(bits, 255, 0))


def test_8bit_gray_alpha_png(tmp_path):
    la = noise((H, W, 2))
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    got = read_image(tmp_path / "la.png")
    np.testing.assert_array_equal(got.pixels[..., 0], la[..., 0])
    np.testing.assert_array_equal(got.alpha, la[..., 1])


def test_cmyk_jpeg_becomes_rgb_and_drops_profile(tmp_path):
    cmyk = Image.new("CMYK", (W, H), (10, 200, 30, 40))
    cmyk.save(tmp_path / "cmyk.jpg", icc_profile=b"pretend CMYK profile")
    got = read_image(tmp_path / "cmyk.jpg")
    assert got.pixels.shape == (H, W, 3) and got.icc_profile is None
    with Image.open(tmp_path / "cmyk.jpg") as im:
        expected = np.asarray(im.convert("RGB"))
    np.testing.assert_array_equal(got.pixels, expected)


def test_format_comes_from_content_not_suffix(tmp_path):
    Image.fromarray(blocks()).save(tmp_path / "really_jpeg.png", "JPEG")
    Image.fromarray(blocks()).save(tmp_path / "really_png.jpg", "PNG")
    Image.fromarray(blocks()).save(tmp_path / "no_suffix", "BMP")
    assert read_image(tmp_path / "really_jpeg.png").format == "JPEG"
    np.testing.assert_array_equal(read_image(tmp_path / "really_png.jpg").pixels, blocks())
    assert read_image(str(tmp_path / "no_suffix")).format == "BMP"


def test_mpo_camera_jpeg_reads_as_jpeg(tmp_path):
    first = Image.fromarray(blocks())
    first.save(tmp_path / "cam.jpg", "MPO", save_all=True, append_images=[first])
    got = read_image(tmp_path / "cam.jpg")
    assert got.format == "JPEG" and got.pixels.shape == (H, W, 3)


# --------------------------------------------------------------------------------------------
# EXIF orientation

# Straight from the EXIF description of each value, written independently of the module.
DISPLAY = {
    1: lambda a: a,
    2: np.fliplr,  # mirror horizontal
    3: lambda a: np.rot90(a, 2),  # rotate 180
    4: np.flipud,  # mirror vertical
    5: lambda a: np.rot90(np.fliplr(a), 1),  # mirror horizontal, rotate 270 CW
    6: lambda a: np.rot90(a, -1),  # rotate 90 CW
    7: lambda a: np.rot90(np.fliplr(a), -1),  # mirror horizontal, rotate 90 CW
    8: lambda a: np.rot90(a, 1),  # rotate 270 CW
}


def exif_with(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def exif_chunk(orientation: int) -> bytes:
    """A PNG eXIf chunk: the TIFF structure without JPEG's "Exif\\0\\0" prefix."""
    return rio_write._png_chunk(b"eXIf", exif_with(orientation).tobytes().removeprefix(b"Exif\0\0"))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_jpeg(tmp_path, orientation):
    stored = blocks()
    path = tmp_path / "o.jpg"
    Image.fromarray(stored).save(path, quality=100, subsampling=0, exif=exif_with(orientation))
    got = read_image(path).pixels
    expected = DISPLAY[orientation](stored)
    assert got.shape == expected.shape
    assert np.abs(got.astype(int) - expected).max() <= 8
    assert got.flags.c_contiguous


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_png_rgba_matches_pillow(tmp_path, orientation):
    stored = noise((H, W, 4))
    path = tmp_path / "o.png"
    Image.fromarray(stored).save(path, exif=exif_with(orientation))
    got = read_image(path)
    expected = DISPLAY[orientation](stored)
    np.testing.assert_array_equal(np.dstack([got.pixels, got.alpha]), expected)
    with Image.open(path) as im:
        np.testing.assert_array_equal(expected, np.asarray(ImageOps.exif_transpose(im)))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_16bit_png_and_tiff(tmp_path, orientation):
    stored, alpha = noise((H, W, 3), np.uint16), noise((H, W), np.uint16, seed=2)
    png = cv2.imencode(".png", np.dstack([stored[..., ::-1], alpha]))[1].tobytes()
    (tmp_path / "o.png").write_bytes(insert_after_ihdr(png, exif_chunk(orientation)))
    tag = [(274, "H", 1, orientation, False)]
    tifffile.imwrite(tmp_path / "o.tif", stored, photometric="rgb", extratags=tag)
    gray_alpha = np.dstack([stored[..., 0], alpha])
    tifffile.imwrite(tmp_path / "ga.tif", gray_alpha, extrasamples=["unassalpha"], extratags=tag)
    for name in ("o.png", "o.tif"):
        got = read_image(tmp_path / name)
        np.testing.assert_array_equal(got.pixels, DISPLAY[orientation](stored))
    got = read_image(tmp_path / "o.png")
    np.testing.assert_array_equal(got.alpha, DISPLAY[orientation](alpha))
    got = read_image(tmp_path / "ga.tif")
    np.testing.assert_array_equal(got.pixels[..., 0], DISPLAY[orientation](stored[..., 0]))
    np.testing.assert_array_equal(got.alpha, DISPLAY[orientation](alpha))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_8bit_tiff_webp_and_png_exif_after_image_data(tmp_path, orientation):
    stored = noise((H, W, 3))
    Image.fromarray(stored).save(tmp_path / "o.tif", exif=exif_with(orientation))
    np.testing.assert_array_equal(
        read_image(tmp_path / "o.tif").pixels, DISPLAY[orientation](stored)
    )
    Image.fromarray(smooth(3)).save(tmp_path / "o.webp", exif=exif_with(orientation))
    assert read_image(tmp_path / "o.webp").pixels.shape == DISPLAY[orientation](stored).shape
    # eXIf chunk placed after IDAT: Pillow only sees it after loading the pixels.
    png = io.BytesIO()
    Image.fromarray(stored).save(png, "PNG")
    body, iend = png.getvalue()[:-12], png.getvalue()[-12:]
    (tmp_path / "late.png").write_bytes(body + exif_chunk(orientation) + iend)
    np.testing.assert_array_equal(
        read_image(tmp_path / "late.png").pixels, DISPLAY[orientation](stored)
    )


# --------------------------------------------------------------------------------------------
# ICC profiles


@pytest.mark.parametrize(
    ("suffix", "dtype"),
    [
        (".png", np.uint8),
        (".jpg", np.uint8),
        (".png", np.uint16),
        (".tif", np.uint16),
        (".tif", np.uint8),
        (".webp", np.uint8),
    ],
)
def test_icc_profile_survives_read_write_read(tmp_path, srgb, suffix, dtype):
    pixels = smooth(3, dtype)
    source = tmp_path / f"source{suffix}"
    if dtype == np.uint16 and suffix == ".tif":
        tifffile.imwrite(source, pixels, photometric="rgb", iccprofile=srgb)
    elif dtype == np.uint16:
        png = cv2.imencode(".png", pixels[..., ::-1])[1].tobytes()
        source.write_bytes(insert_after_ihdr(png, rio_write._iccp_chunk(srgb)))
    else:
        Image.fromarray(pixels).save(source, icc_profile=srgb)
    first = read_image(source)
    assert first.icc_profile == srgb
    assert first.pixels.dtype == dtype
    out = write_image(tmp_path / f"out{suffix}", first.pixels, icc_profile=first.icc_profile)
    assert read_image(out).icc_profile == srgb
    with Image.open(out) as im:
        assert im.info.get("icc_profile") == srgb  # other readers see it too


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_iccp_chunk_is_valid_and_right_after_ihdr(tmp_path, srgb, layout, dtype):
    pixels, alpha = sample(layout, dtype, lossless=True)
    out = write_image(tmp_path / "x.png", pixels, alpha=alpha, icc_profile=srgb)
    chunks = png_chunks(out.read_bytes())  # checks every CRC
    assert [kind for kind, _ in chunks[:2]] == [b"IHDR", b"iCCP"]
    assert {kind for kind, _ in chunks[2:-1]} == {b"IDAT"} and chunks[-1] == (b"IEND", b"")
    name, rest = chunks[1][1].split(b"\x00", 1)
    assert name == b"icc" and rest[0] == 0  # compression method 0
    assert zlib.decompress(rest[1:]) == srgb


def test_written_16bit_png_is_really_16bit(tmp_path, srgb):
    out = write_image(tmp_path / "x.png", noise((H, W, 3), np.uint16), icc_profile=srgb)
    chunks = png_chunks(out.read_bytes())
    assert chunks[0][0] == b"IHDR" and chunks[0][1][8] == 16  # bit depth byte
    assert chunks[1][0] == b"iCCP"


# --------------------------------------------------------------------------------------------
# size limits


@pytest.fixture(scope="module")
def huge_png(tmp_path_factory) -> Path:
    """A valid 20000 x 20000 1-bit PNG: 400 MP, but only a few kB on disk."""
    side = 20000
    row = b"\x00" + bytes(side // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path = tmp_path_factory.mktemp("huge") / "big.png"
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + rio_write._png_chunk(b"IHDR", ihdr)
        + rio_write._png_chunk(b"IDAT", idat)
        + rio_write._png_chunk(b"IEND", b"")
    )
    return path


def test_max_pixels_refuses_before_decoding(huge_png, monkeypatch):
    def no_decoding(*args):
        raise AssertionError("pixels must not be decoded")

    monkeypatch.setattr(rio_read, "_decode_with_pillow", no_decoding)
    monkeypatch.setattr(rio_read, "_decode_png_with_cv2", no_decoding)
    monkeypatch.setattr(rio_read, "_opencv_read", no_decoding)
    monkeypatch.setattr(rio_read, "_tiff_samples", no_decoding)
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageFileError) as excinfo:
        read_image(huge_png)  # also above Pillow's own bomb limit: no Pillow error may leak
    assert one_line(excinfo) == (
        f"{huge_png}: 400,000,000 pixels exceeds the limit of 300,000,000 "
        "(raise it with --max-pixels)"
    )
    assert before == Image.MAX_IMAGE_PIXELS


def test_max_pixels_is_configurable(tmp_path):
    write_image(tmp_path / "x.png", noise((10, 10)))
    tifffile.imwrite(tmp_path / "ga.tif", noise((10, 10, 2), np.uint16), extrasamples=[2])
    assert read_image(tmp_path / "x.png", max_pixels=100).pixels.shape == (10, 10, 1)
    for name in ("x.png", "ga.tif"):
        with pytest.raises(ImageFileError, match="100 pixels exceeds the limit of 99 "):
            read_image(tmp_path / name, max_pixels=99)


def test_pillow_bomb_limit_neither_applies_nor_changes(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # Pillow would refuse or warn
    write_image(tmp_path / "x.tif", noise((H, W, 3)))
    assert read_image(tmp_path / "x.tif").pixels.shape == (H, W, 3)  # no warning (=error here)
    assert Image.MAX_IMAGE_PIXELS == 10


def test_concurrent_reads_restore_pillow_limit(tmp_path):
    paths = [write_image(tmp_path / f"{i}.png", noise((H, W, 3), seed=i)) for i in range(8)]
    before = Image.MAX_IMAGE_PIXELS
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(read_image, paths * 4))
    for path, got in zip(paths * 4, results, strict=True):
        np.testing.assert_array_equal(got.pixels, noise((H, W, 3), seed=int(path.stem)))
    assert before == Image.MAX_IMAGE_PIXELS


# --------------------------------------------------------------------------------------------
# read errors


def expect_read_error(path: Path | str, message: str) -> None:
    with pytest.raises(ImageFileError) as excinfo:
        read_image(path)
    assert one_line(excinfo) == f"{path}: {message}"


def test_read_missing_directory_empty_and_text(tmp_path):
    expect_read_error(tmp_path / "missing.png", "no such file")
    expect_read_error(tmp_path / "missing" / "x.png", "no such file")
    expect_read_error(tmp_path, "is a directory")
    (tmp_path / "empty.png").write_bytes(b"")
    expect_read_error(tmp_path / "empty.png", "empty file")
    (tmp_path / "notes.png").write_text("this is not an image\n")
    expect_read_error(tmp_path / "notes.png", "not an image file (unrecognised format)")


def test_read_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    expect_read_error(tmp_path / "pipe.png", "not a regular file")


def test_read_other_format_is_named(tmp_path):
    Image.fromarray(blocks()).save(tmp_path / "anim.png", "GIF")
    expect_read_error(
        tmp_path / "anim.png",
        "unsupported image format GIF (expected PNG, JPEG, TIFF, WebP or BMP)",
    )


def test_read_permission_denied(tmp_path, monkeypatch):
    path = write_image(tmp_path / "x.png", noise((H, W)))

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(rio_read, "open", denied, raising=False)  # works even when run as root
    expect_read_error(path, "permission denied")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_read_permission_denied_for_real(tmp_path):
    path = write_image(tmp_path / "x.png", noise((H, W)))
    path.chmod(0)
    try:
        expect_read_error(path, "permission denied")
    finally:
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)


def encoded(fmt: str, pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about some broken headers
@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("half.png", lambda: encoded("PNG", noise((64, 64, 3)))[:3000]),
        ("half.jpg", lambda: encoded("JPEG", noise((64, 64, 3)))[:3000]),
        ("half.tif", lambda: encoded("TIFF", noise((64, 64, 3)))[:6000]),
        ("half.webp", lambda: encoded("WEBP", noise((64, 64, 3)))[:3000]),
        ("half.bmp", lambda: encoded("BMP", noise((64, 64, 3)))[:6000]),
        ("half16.png", lambda: cv2.imencode(".png", noise((64, 64, 3), np.uint16))[1][:9000]),
        ("half16.tif", lambda: cv2.imencode(".tif", noise((64, 64, 3), np.uint16))[1][:9000]),
        ("signature.png", lambda: b"\x89PNG\r\n\x1a\n"),
        ("header.jpg", lambda: encoded("JPEG", noise((64, 64, 3)))[:200]),
        ("garbage.tif", lambda: b"II*\x00" + bytes(range(256)) * 4),
        (
            "bad_idat.png",
            lambda: encoded("PNG", noise((64, 64, 3))).replace(b"IDAT", b"IDAT\xff", 1),
        ),
    ],
)
def test_read_truncated_or_corrupt(tmp_path, name, make):
    data = make()
    (tmp_path / name).write_bytes(data.tobytes() if isinstance(data, np.ndarray) else data)
    expect_read_error(tmp_path / name, "truncated or corrupt image file")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda p: tifffile.imwrite(p, noise((H, W)).astype(np.float32)),
            "unsupported pixel format: 32-bit floating-point samples (Pillow mode F)",
        ),
        (
            lambda p: tifffile.imwrite(p, noise((H, W)).astype(np.int32)),
            "unsupported pixel format: 32-bit integer samples (Pillow mode I)",
        ),
        (
            lambda p: tifffile.imwrite(p, noise((H, W, 3)).astype(np.float32), photometric="rgb"),
            "unsupported pixel format: 3 x float32 samples per pixel (rgb TIFF)",
        ),
        (
            lambda p: tifffile.imwrite(
                p, noise((H, W, 3), np.uint16), photometric="minisblack", planarconfig="contig"
            ),
            "unsupported pixel format: 3 x uint16 samples per pixel (minisblack TIFF)",
        ),
    ],
)
def test_read_unsupported_pixel_formats_say_what_they_are(tmp_path, make, message):
    make(tmp_path / "x.tif")
    expect_read_error(tmp_path / "x.tif", message)


def test_read_16bit_gray_alpha_tiff_with_unavailable_codec(tmp_path, monkeypatch):
    tifffile.imwrite(tmp_path / "ga.tif", noise((H, W, 2), np.uint16), extrasamples=[2])
    monkeypatch.setattr(tifffile.TIFF, "DECOMPRESSORS", {})
    expect_read_error(
        tmp_path / "ga.tif", "unsupported TIFF compression NONE for this pixel format"
    )


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about some broken headers
def test_read_errors_never_leak_other_exceptions(tmp_path):
    rng = np.random.default_rng(5)
    sources = [encoded(fmt, noise((32, 32, 3))) for fmt in ("PNG", "JPEG", "TIFF", "BMP", "WEBP")]
    for i in range(60):
        data = bytearray(sources[i % len(sources)])
        for pos in rng.integers(0, len(data), 8):
            data[pos] = rng.integers(0, 256)
        (tmp_path / "fuzz").write_bytes(bytes(data[: rng.integers(1, len(data) + 1)]))
        try:
            read_image(tmp_path / "fuzz")
        except ImageFileError as exc:
            assert "\n" not in str(exc)


# --------------------------------------------------------------------------------------------
# write errors and atomicity


def test_write_unknown_suffix(tmp_path):
    with pytest.raises(ImageFileError) as excinfo:
        write_image(tmp_path / "x.gif", noise((H, W)))
    assert one_line(excinfo) == (
        f"{tmp_path / 'x.gif'}: unsupported output format '.gif' "
        "(use .png, .jpg, .jpeg, .tif, .tiff, .webp, .bmp)"
    )
    assert list(tmp_path.iterdir()) == []


def test_write_encoder_failure_is_one_line(tmp_path):
    out = tmp_path / "wide.webp"
    with pytest.raises(ImageFileError) as excinfo:
        write_image(out, np.zeros((1, 16384), np.uint8))  # WebP allows at most 16383
    assert one_line(excinfo).startswith(f"{out}: cannot encode as WEBP: ")
    assert list(tmp_path.iterdir()) == []


def test_write_suffix_is_case_insensitive(tmp_path):
    assert read_image(write_image(tmp_path / "X.JPEG", blocks())).format == "JPEG"


def test_write_existing_without_overwrite_keeps_original(tmp_path):
    out = tmp_path / "x.png"
    out.write_bytes(b"original bytes")
    with pytest.raises(ImageFileError) as excinfo:
        write_image(out, noise((H, W)))
    assert one_line(excinfo) == f"{out}: already exists (use --overwrite)"
    assert out.read_bytes() == b"original bytes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]


def test_write_overwrite_replaces_with_normal_permissions(tmp_path):
    out = tmp_path / "x.png"
    out.write_bytes(b"original bytes")
    reference = tmp_path / "reference"
    reference.write_bytes(b"")
    pixels = noise((H, W, 3))
    assert write_image(out, pixels, overwrite=True) == out
    np.testing.assert_array_equal(read_image(out).pixels, pixels)
    assert stat.S_IMODE(out.stat().st_mode) == stat.S_IMODE(reference.stat().st_mode)
    assert leftovers(tmp_path) == []


def test_write_target_appearing_during_write_is_not_clobbered(tmp_path, monkeypatch):
    out = tmp_path / "x.png"
    real_encode = rio_write._encode

    def encode_then_race(*args):
        payload = real_encode(*args)
        out.write_bytes(b"written by someone else")  # after the early existence check
        return payload

    monkeypatch.setattr(rio_write, "_encode", encode_then_race)
    with pytest.raises(ImageFileError, match="already exists"):
        write_image(out, noise((H, W)))
    assert out.read_bytes() == b"written by someone else"
    assert leftovers(tmp_path) == []


def test_write_temporary_name_and_cleanup(tmp_path, monkeypatch):
    seen: list[str] = []
    real_link = os.link

    def spy(src, dst, *args, **kwargs):
        seen.append(Path(src).name)
        assert Path(src).parent == Path(dst).parent
        return real_link(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "link", spy)
    write_image(tmp_path / "x.png", noise((H, W)))
    assert len(seen) == 1 and seen[0].startswith(".") and ".tmp" in seen[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]


@pytest.mark.parametrize("code", [errno.EPERM, errno.EXDEV, errno.ENOTSUP])
def test_write_without_hard_links_falls_back(tmp_path, monkeypatch, code):
    def no_links(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "link", no_links)
    pixels = noise((H, W, 3))
    out = write_image(tmp_path / "x.png", pixels)
    np.testing.assert_array_equal(read_image(out).pixels, pixels)
    out.write_bytes(b"original")
    with pytest.raises(ImageFileError, match="already exists"):
        write_image(out, pixels)
    assert out.read_bytes() == b"original"
    assert leftovers(tmp_path) == []


def test_write_failure_after_temp_file_cleans_up(tmp_path, monkeypatch):
    def disk_full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)
    out = tmp_path / "x.png"
    with pytest.raises(ImageFileError) as excinfo:
        write_image(out, noise((H, W)))
    assert one_line(excinfo) == f"{out}: cannot write: no space left on device"
    assert list(tmp_path.iterdir()) == []


def test_write_other_link_error_cleans_up(tmp_path, monkeypatch):
    def io_error(*args, **kwargs):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "link", io_error)
    with pytest.raises(ImageFileError, match="cannot write: input/output error"):
        write_image(tmp_path / "x.png", noise((H, W)))
    assert list(tmp_path.iterdir()) == []


def test_write_missing_directory_and_file_as_directory(tmp_path):
    out = tmp_path / "missing" / "x.png"
    with pytest.raises(ImageFileError) as excinfo:
        write_image(out, noise((H, W)))
    assert one_line(excinfo) == f"{out}: cannot write: no such directory '{out.parent}'"
    (tmp_path / "file").write_bytes(b"")
    out = tmp_path / "file" / "x.png"
    with pytest.raises(ImageFileError) as excinfo:
        write_image(out, noise((H, W)))
    assert one_line(excinfo) == f"{out}: cannot write: '{out.parent}' is not a directory"


def test_write_onto_directory(tmp_path):
    (tmp_path / "d.png").mkdir()
    with pytest.raises(ImageFileError, match="already exists"):
        write_image(tmp_path / "d.png", noise((H, W)))
    with pytest.raises(ImageFileError, match=r"d\.png: is a directory"):
        write_image(tmp_path / "d.png", noise((H, W)), overwrite=True)


def test_write_unwritable_directory(tmp_path, monkeypatch):
    real_open = os.open

    def deny_in_tmp(path, *args, **kwargs):
        if Path(path).parent == tmp_path:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny_in_tmp)  # works even when run as root
    out = tmp_path / "x.png"
    with pytest.raises(ImageFileError) as excinfo:
        write_image(out, noise((H, W)))
    assert one_line(excinfo) == f"{out}: cannot write: permission denied in '{tmp_path}'"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_write_unwritable_directory_for_real(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(ImageFileError, match="permission denied"):
            write_image(locked / "x.png", noise((H, W)))
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(stat.S_IRWXU)


# --------------------------------------------------------------------------------------------
# memory: OpenCV decodes straight into the result where it matches Pillow; encoders stream


def photo(height: int = 48, width: int = 64, channels: int = 3, dtype: type = np.uint8):
    """Smooth waves plus noise: realistic for JPEG, and every PNG filter type wins some rows."""
    rng = np.random.default_rng(11)
    y, x = np.mgrid[0:height, 0:width]
    planes = [np.sin(x / (3 + 2 * c)) * np.cos(y / (4 + c)) for c in range(channels)]
    arr = np.stack(planes, axis=-1) * 0.4 + 0.5 + rng.normal(0, 0.02, (height, width, channels))
    max_value = np.iinfo(dtype).max
    return np.clip(np.round(arr * max_value), 0, max_value).astype(dtype)


def read_spied(monkeypatch, path: Path, *, opencv: bool = True) -> tuple[ImageData, list[str]]:
    """read_image(path), with the OpenCV path allowed or not, and which decoders ran."""
    ran: list[str] = []
    for name in ("_opencv_read", "_decode_with_pillow"):
        real = getattr(rio_read, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            ran.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(rio_read, name, spy)
    if not opencv:
        monkeypatch.setattr(rio_read, "_opencv_channels", lambda *args: None)
    try:
        return read_image(path), ran
    finally:
        monkeypatch.undo()


def assert_same_image(a: ImageData, b: ImageData) -> None:
    np.testing.assert_array_equal(a.pixels, b.pixels)
    assert a.pixels.dtype == b.pixels.dtype
    if b.alpha is None:
        assert a.alpha is None
    else:
        np.testing.assert_array_equal(a.alpha, b.alpha)
    assert (a.icc_profile, a.format) == (b.icc_profile, b.format)


def save_mpo(path: Path) -> None:
    first, second = Image.fromarray(photo()), Image.fromarray(photo()[::-1].copy())
    first.save(path, "MPO", save_all=True, append_images=[second])


OPENCV_CASES = {
    "gray.png": lambda p: Image.fromarray(photo(channels=1)[..., 0]).save(p),
    "gray16.png": lambda p: Image.fromarray(photo(channels=1, dtype=np.uint16)[..., 0]).save(p),
    "rgb.png": lambda p: Image.fromarray(photo()).save(p),
    "rgba.png": lambda p: Image.fromarray(photo(channels=4)).save(p),
    "rgb_opencv.png": lambda p: cv2.imwrite(str(p), photo()),
    "rgb_icc_exif.png": lambda p: Image.fromarray(photo()).save(
        p, icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes(),
        exif=exif_with(6),
    ),
    "gray.jpg": lambda p: Image.fromarray(photo(channels=1)[..., 0]).save(p, quality=90),
    "rgb444.jpg": lambda p: Image.fromarray(photo()).save(p, quality=95, subsampling=0),
    "rgb420.jpg": lambda p: Image.fromarray(photo(47, 63)).save(p, quality=80, subsampling=2),
    "progressive.jpg": lambda p: Image.fromarray(photo()).save(p, progressive=True),
    "rotated_icc.jpg": lambda p: Image.fromarray(photo()).save(
        p, exif=exif_with(8),
        icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes(),
    ),
    "camera.mpo": save_mpo,
}  # fmt: skip


@pytest.mark.parametrize("name", OPENCV_CASES)
def test_opencv_and_pillow_decode_identically(tmp_path, monkeypatch, name):
    path = tmp_path / name
    OPENCV_CASES[name](path)
    fast, ran = read_spied(monkeypatch, path)
    assert ran == ["_opencv_read"]
    slow, ran = read_spied(monkeypatch, path, opencv=False)
    assert ran == ["_decode_with_pillow"]
    assert_same_image(fast, slow)
    for arr in (fast.pixels, fast.alpha):
        assert arr is None or (arr.flags.c_contiguous and arr.flags.writeable)


def png_without_iend(path: Path) -> None:
    Image.fromarray(photo()).save(path)
    path.write_bytes(path.read_bytes()[:-12])


def png_with_exif_after_pixels(path: Path) -> None:
    png = encoded("PNG", photo())
    path.write_bytes(png[:-12] + exif_chunk(6) + png[-12:])


PILLOW_CASES = {
    "palette.png": lambda p: Image.fromarray(photo()).quantize(16).save(p),
    "colour_key.png": lambda p: Image.fromarray(photo()).save(p, transparency=(1, 2, 3)),
    "gray_alpha.png": lambda p: Image.fromarray(photo(channels=2), "LA").save(p),
    "bilevel.png": lambda p: Image.fromarray(photo(channels=1)[..., 0]).convert("1").save(p),
    "animated.png": lambda p: Image.fromarray(photo()).save(
        p, save_all=True, append_images=[Image.fromarray(photo()[::-1].copy())]
    ),
    "no_iend.png": png_without_iend,
    "exif_after_pixels.png": png_with_exif_after_pixels,
    "cmyk.jpg": lambda p: Image.fromarray(photo()).convert("CMYK").save(p),
    "trailer.jpg": lambda p: p.write_bytes(encoded("JPEG", photo()) + b"camera trailer"),
    "rgb.tif": lambda p: Image.fromarray(photo()).save(p),
    "rgb.webp": lambda p: Image.fromarray(photo()).save(p, lossless=True),
}


@pytest.mark.parametrize("name", PILLOW_CASES)
def test_layouts_opencv_would_change_stay_with_pillow(tmp_path, monkeypatch, name):
    path = tmp_path / name
    PILLOW_CASES[name](path)
    image, ran = read_spied(monkeypatch, path)
    assert ran == ["_decode_with_pillow"]
    assert image.pixels.flags.c_contiguous and image.pixels.flags.writeable


@pytest.mark.parametrize(
    "break_opencv",
    [
        pytest.param(lambda m: m.setattr(cv2, "imread", lambda *a: None), id="imread-fails"),
        pytest.param(
            lambda m: m.setattr(rio_read, "_OPENCV_ALLOCATES_WITH_NUMPY", False), id="opencv-4.8"
        ),
        pytest.param(lambda m: m.setattr(rio_read, "_opencv_can_open", lambda p: False), id="name"),
    ],
)
@pytest.mark.parametrize("name", ["rgba.png", "rgb444.jpg", "gray16.png"])
def test_opencv_fallbacks_give_the_same_image(tmp_path, monkeypatch, break_opencv, name):
    path = tmp_path / name
    OPENCV_CASES[name](path)
    expected, _ = read_spied(monkeypatch, path, opencv=False)
    break_opencv(monkeypatch)
    assert_same_image(read_image(path), expected)


@pytest.mark.parametrize(
    "break_opencv",
    [
        lambda m: m.setattr(rio_read, "_OPENCV_ALLOCATES_WITH_NUMPY", False),
        lambda m: m.setattr(rio_read, "_opencv_can_open", lambda p: False),
    ],
)
@pytest.mark.parametrize("layout", ["rgb", "rgba", "gray_alpha"])
def test_16bit_colour_png_through_every_opencv_route(tmp_path, monkeypatch, break_opencv, layout):
    pixels, alpha = sample(layout, np.uint16, lossless=True)
    path = write_image(tmp_path / "x.png", pixels, alpha=alpha)
    expected = read_image(path)
    break_opencv(monkeypatch)
    assert_same_image(read_image(path), expected)


def test_opencv_reads_non_ascii_names(tmp_path, monkeypatch):
    path = tmp_path / "fotó 1.png"
    Image.fromarray(photo()).save(path)
    image, ran = read_spied(monkeypatch, path)
    assert ran == ["_opencv_read"]  # by name where OpenCV can open it, else from the bytes
    np.testing.assert_array_equal(image.pixels, photo())


@pytest.mark.parametrize(
    ("channels", "colour"),
    [(4, (2, 1, 0)), (4, (0, 1, 2)), (4, (0,)), (2, (0,)), (3, (1, 0))],
)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_separate_alpha_in_place_matches_indexing(monkeypatch, channels, colour, dtype):
    monkeypatch.setattr(rio_read, "_STRIP_BYTES", 40)  # many strips, odd boundaries
    arr = noise((13, 17, channels), dtype)
    expected_pixels, expected_alpha = arr[..., list(colour)].copy(), arr[..., -1].copy()
    pixels, alpha = rio_read._separate_alpha(arr, colour)
    np.testing.assert_array_equal(pixels, expected_pixels)
    np.testing.assert_array_equal(alpha, expected_alpha)
    assert np.shares_memory(pixels, arr) and np.shares_memory(alpha, arr)
    assert pixels.flags.c_contiguous and alpha.flags.c_contiguous


def idat_filter_types(png: bytes, row_bytes: int) -> set[int]:
    data = b"".join(payload for kind, payload in png_chunks(png) if kind == b"IDAT")
    rows = np.frombuffer(zlib.decompress(data), np.uint8).reshape(-1, row_bytes + 1)
    return set(rows[:, 0].tolist())


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_streamed_png_is_exact_across_strips(tmp_path, monkeypatch, layout, dtype):
    monkeypatch.setattr(rio_write, "_STRIP_BYTES", 1000)  # a few rows per strip
    channels, has_alpha = LAYOUTS[layout]
    full = photo(40, 56, channels + has_alpha, dtype)
    pixels, alpha = full[..., :channels], (full[..., -1] if has_alpha else None)
    out = write_image(tmp_path / "x.png", pixels, alpha=alpha)
    # Independent decoders agree: OpenCV (B, G, R order) and, for 8 bits, Pillow.
    back = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    back = back[..., None] if back.ndim == 2 else back
    if back.shape[2] >= 3:
        back = np.concatenate([back[..., 2::-1], back[..., 3:]], axis=2)
    if layout == "gray_alpha":  # OpenCV expands gray+alpha to four channels
        back = back[..., [0, 3]]
    np.testing.assert_array_equal(back, full)
    if dtype == np.uint8:
        with Image.open(out) as im:
            np.testing.assert_array_equal(np.asarray(im).reshape(full.shape), full)
    row_bytes = 56 * (channels + has_alpha) * np.dtype(dtype).itemsize
    assert len(idat_filter_types(out.read_bytes(), row_bytes)) >= 3  # adaptive filtering


def test_png_filters_are_all_used_and_exact(monkeypatch):
    # Rows built so that each filter type is the cheapest for at least one of them.
    monkeypatch.setattr(rio_write, "_STRIP_BYTES", 300)
    rng = np.random.default_rng(3)
    ramp = np.arange(60, dtype=np.uint8)[None, :, None].repeat(3, axis=2)
    rows = [
        rng.integers(0, 256, (1, 60, 3), dtype=np.uint8) // 8,  # small values: None
        ramp * 7,  # constant step: Sub
        ramp * 7,  # same as above: Up
        np.zeros((1, 60, 3), np.uint8),
        photo(6, 60),
    ]
    arr = np.concatenate(rows, axis=0)
    buffer = io.BytesIO()
    rio_write._write_png(buffer, samples=arr, alpha=None, icc=None)
    with Image.open(io.BytesIO(buffer.getvalue())) as im:
        np.testing.assert_array_equal(np.asarray(im), arr)
    assert idat_filter_types(buffer.getvalue(), 60 * 3) >= {0, 1, 2}


def traced_peak(function: Callable[[], object]) -> int:
    """Peak bytes numpy and Python allocated while ``function`` ran (its result included)."""
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(("channels", "suffix"), [(3, ".png"), (4, ".png"), (3, ".jpg")])
def test_reading_makes_no_whole_image_copies(tmp_path, channels, suffix):
    pixels = photo(300, 400, channels)
    path = tmp_path / f"x{suffix}"
    Image.fromarray(pixels).save(path, quality=95)
    read_image(path)  # first use imports Pillow's plugins: not what is measured
    # The result itself, alpha's temporary plane, a strip: far below two images.
    assert traced_peak(lambda: read_image(path)) < 1.3 * pixels.nbytes + rio_read._STRIP_BYTES


@pytest.mark.parametrize(
    ("suffix", "dtype", "has_alpha"),
    [(".png", np.uint8, False), (".png", np.uint8, True), (".png", np.uint16, True),
     (".tif", np.uint16, False), (".tif", np.uint16, True)],
)  # fmt: skip
def test_writing_streams_without_whole_image_copies(
    tmp_path, monkeypatch, suffix, dtype, has_alpha
):
    monkeypatch.setattr(rio_write, "_STRIP_BYTES", 1 << 14)
    write_image(tmp_path / f"warm-up{suffix}", photo(8, 8, 3, dtype))  # first-use imports
    peaks = []
    for height in (200, 1600):
        full = photo(height, 400, 3 + has_alpha, dtype)
        pixels, alpha = full[..., :3].copy(), (full[..., 3].copy() if has_alpha else None)
        out = tmp_path / f"{height}{suffix}"
        peaks.append(traced_peak(lambda: write_image(out, pixels, alpha=alpha)))  # noqa: B023
    # Neither an interleaved RGBA copy nor the encoded file: 8x the image, the same peak
    # (zlib's state and one strip's filter arrays), where one copy would add 7/8 of the image.
    assert peaks[1] < peaks[0] + (1 << 16) < full.nbytes / 2


def fail_on_call(monkeypatch, name: str, n: int, error: Exception) -> list[int]:
    """Patch ``rio_write.<name>`` to raise ``error`` on its ``n``-th call (a failure midway through
    a streamed write); returns the call log, which a test clears to fail again."""
    real, calls = getattr(rio_write, name), []

    def failing(*args):
        calls.append(1)
        if len(calls) == n:
            raise error
        return real(*args)

    monkeypatch.setattr(rio_write, name, failing)
    return calls


def test_streamed_encoder_failure_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(rio_write, "_STRIP_BYTES", 1000)
    calls = fail_on_call(monkeypatch, "_png_filter", 3, ValueError("simulated\nencoder failure"))
    out = tmp_path / "x.png"
    with pytest.raises(ImageFileError) as excinfo:
        write_image(out, photo())
    assert one_line(excinfo) == f"{out}: cannot encode as PNG: simulated encoder failure"
    assert list(tmp_path.iterdir()) == []
    out.write_bytes(b"original")
    calls.clear()
    with pytest.raises(ImageFileError, match="cannot encode as PNG"):
        write_image(out, photo(), overwrite=True)
    assert out.read_bytes() == b"original"
    assert leftovers(tmp_path) == []


def test_streamed_write_failure_is_a_write_error(tmp_path, monkeypatch):
    monkeypatch.setattr(rio_write, "_STRIP_BYTES", 1000)
    fail_on_call(monkeypatch, "_png_rows", 2, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    out = tmp_path / "x.png"
    with pytest.raises(ImageFileError) as excinfo:
        write_image(out, photo())
    assert one_line(excinfo) == f"{out}: cannot write: no space left on device"
    assert list(tmp_path.iterdir()) == []


def test_write_atomically_streams_into_a_hidden_temporary_file(tmp_path):
    target = tmp_path / "out.bin"
    seen: list[str] = []

    def write(file):
        seen.extend(p.name for p in tmp_path.iterdir())
        file.write(b"first part, ")
        file.write(b"second part")

    write_atomically(target, write)
    assert target.read_bytes() == b"first part, second part"
    assert len(seen) == 1 and seen[0].startswith(".out.bin.") and seen[0].endswith(".tmp")

    def fail(file):
        file.write(b"partial")
        raise RuntimeError("stopped midway")

    with pytest.raises(RuntimeError, match="stopped midway"):
        write_atomically(target, fail, overwrite=True)
    assert target.read_bytes() == b"first part, second part"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
    with pytest.raises(RuntimeError):
        write_atomically(tmp_path / "new.bin", fail)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


# --------------------------------------------------------------------------------------------
# list_images


def test_list_images_directory(tmp_path):
    for name in ("b.jpg", "a.PNG", "c.tiff", "d.WebP", "e.bmp", "f.jpeg", "g.tif"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / ".hidden.png").write_bytes(b"x")
    (tmp_path / "notes.txt").write_bytes(b"x")
    (tmp_path / "sub.png").mkdir()
    (tmp_path / "sub.png" / "inner.png").write_bytes(b"x")
    names = [p.name for p in list_images([tmp_path])]
    assert names == ["a.PNG", "b.jpg", "c.tiff", "d.WebP", "e.bmp", "f.jpeg", "g.tif"]


def test_list_images_files_order_and_duplicates(tmp_path):
    (tmp_path / "dir").mkdir()
    for name in ("x.png", "y.png"):
        (tmp_path / "dir" / name).write_bytes(b"x")
    odd = tmp_path / "photo.raw"
    odd.write_bytes(b"x")
    got = list_images([odd, tmp_path / "dir" / "y.png", str(tmp_path / "dir"), odd])
    assert got == [odd, tmp_path / "dir" / "y.png", tmp_path / "dir" / "x.png"]
    assert list_images([]) == []


def test_list_images_errors(tmp_path):
    with pytest.raises(ImageFileError) as excinfo:
        list_images([tmp_path / "missing"])
    assert one_line(excinfo) == f"{tmp_path / 'missing'}: no such file or directory"
    (tmp_path / "notes.txt").write_bytes(b"x")
    with pytest.raises(ImageFileError) as excinfo:
        list_images([tmp_path])
    assert one_line(excinfo) == (
        f"{tmp_path}: no images found (looked for .png, .jpg, .jpeg, .tif, .tiff, .webp, .bmp)"
    )


# --------------------------------------------------------------------------------------------
# float conversion


def test_to_float():
    out = to_float(np.array([0, 51, 255], np.uint8))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0, 0.2, 1], rtol=1e-6)
    out = to_float(np.array([0, 65535], np.uint16))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [0, 1])
    assert to_float(np.array([0.25], np.float64)).dtype == np.float32
    with pytest.raises(ValueError):
        to_float(np.array([1], np.int32))


def test_from_float_clips_and_handles_nan():
    x = np.array([np.nan, -np.inf, -0.2, 0.0, 1.0, 1.7, np.inf])
    np.testing.assert_array_equal(from_float(x, 8), [0, 0, 0, 0, 255, 255, 255])
    np.testing.assert_array_equal(from_float(x, 16), [0, 0, 0, 0, 65535, 65535, 65535])
    assert from_float(x, 8).dtype == np.uint8 and from_float(x, 16).dtype == np.uint16
    assert from_float(np.array([1.0], np.float16), 16)[0] == 65535  # no float16 overflow
    with pytest.raises(ValueError):
        from_float(np.array([1], np.uint8), 8)
    with pytest.raises(ValueError):
        from_float(np.array([0.5]), 12)


def test_from_float_rounds_half_to_even():
    assert from_float(np.array([0.5]), 8)[0] == 128  # 127.5
    assert from_float(np.array([0.5]), 16)[0] == 32768  # 32767.5
    x = ((np.arange(255) + 0.5) / 255).astype(np.float32)
    scaled = x * np.float32(255)
    ties = scaled == np.floor(scaled) + 0.5
    assert ties.sum() > 10  # float32 products that land exactly on .5
    got = from_float(x, 8)
    np.testing.assert_array_equal(got, np.round(scaled))
    assert (got[ties] % 2 == 0).all()


def test_float_round_trip_is_exact_for_every_value():
    all8 = np.arange(256, dtype=np.uint8)
    all16 = np.arange(65536, dtype=np.uint16)
    np.testing.assert_array_equal(from_float(to_float(all8), 8), all8)
    np.testing.assert_array_equal(from_float(to_float(all16), 16), all16)


@settings(max_examples=50, deadline=None)
@given(
    hnp.arrays(np.float64, hnp.array_shapes(max_dims=3, max_side=5), elements=st.floats()),
    st.sampled_from([8, 16]),
)
def test_from_float_matches_reference(x, bits):
    scale = 255 if bits == 8 else 65535
    expected = np.round(np.clip(np.nan_to_num(x, nan=0.0), 0, 1) * scale)
    np.testing.assert_array_equal(from_float(x, bits), expected)


def test_image_data_bit_depth():
    assert ImageData(np.zeros((1, 1, 1), np.uint8), None, None, "PNG").bit_depth == 8
    assert ImageData(np.zeros((1, 1, 3), np.uint16), None, None, "TIFF").bit_depth == 16
