"""Decoding uploads: every mode to the right RGB pixels, EXIF orientation, animations, sniffing, limits."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from server_helpers import encode, post_image

from clicksam.server.errors import ImageTooLargeError, InvalidImageError, UnsupportedImageTypeError
from clicksam.server.images import BACKGROUND, decode_image, sniff_format

MAX = 100_000_000
RED = (220, 20, 30)
BLUE = (20, 40, 210)
GREY = np.array(BACKGROUND)


def displayed_scene(height: int = 60, width: int = 90) -> np.ndarray:
    """The picture as a person should see it: red block near the top-left, blue block bottom-right."""
    scene = np.full((height, width, 3), 240, np.uint8)
    scene[5:20, 10:30] = RED
    scene[40:55, 60:85] = BLUE
    return scene


def raw_for_orientation(displayed: np.ndarray, orientation: int) -> np.ndarray:
    """The stored (sensor) pixels that EXIF ``orientation`` turns into ``displayed``.

    Written from the EXIF 2.3 definitions with numpy, independently of Pillow's transpose table.
    """
    d = displayed
    return {
        1: d,
        2: d[:, ::-1],  # stored mirrored left-right
        3: d[::-1, ::-1],  # stored upside down
        4: d[::-1, :],  # stored mirrored top-bottom
        5: d.transpose(1, 0, 2),  # stored transposed (mirror about the main diagonal)
        6: np.rot90(d, 1),  # viewer rotates 90 deg clockwise: stored rotated 90 deg counter-clockwise
        7: d[::-1, ::-1].transpose(1, 0, 2),  # stored transversed (mirror about the anti-diagonal)
        8: np.rot90(d, -1),  # viewer rotates 90 deg counter-clockwise: stored rotated clockwise
    }[orientation]


def with_orientation(raw: np.ndarray, orientation: int, fmt: str) -> bytes:
    image = Image.fromarray(np.ascontiguousarray(raw))
    exif = image.getexif()
    exif[0x0112] = orientation
    extra = {"quality": 95} if fmt == "JPEG" else {}
    return encode(image, fmt, exif=exif, **extra)


def close(a: np.ndarray, b: np.ndarray | tuple[int, ...], tol: int) -> bool:
    return bool(np.abs(a.astype(int) - np.asarray(b, dtype=int)).max() <= tol)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_puts_regions_where_a_person_sees_them(fmt: str, orientation: int) -> None:
    scene = displayed_scene()
    data = with_orientation(raw_for_orientation(scene, orientation), orientation, fmt)
    pixels = decode_image(data, max_pixels=MAX).pixels
    assert pixels.shape == scene.shape
    tol = 0 if fmt == "PNG" else 12
    # centres of the blocks, away from JPEG ringing at their edges
    assert close(pixels[12, 20], RED, tol)
    assert close(pixels[47, 72], BLUE, tol)
    assert close(pixels[45, 15], (240, 240, 240), tol)
    if fmt == "PNG":
        assert np.array_equal(pixels, scene)


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_orientation_through_the_api_gives_the_displayed_size(client: TestClient, orientation: int) -> None:
    scene = displayed_scene(60, 90)
    data = with_orientation(raw_for_orientation(scene, orientation), orientation, "JPEG")
    response = post_image(client, data, "photo.jpg", "image/jpeg")
    assert response.status_code == 200
    body = response.json()
    assert body["original_size"] == [60, 90]
    assert body["input_size"] == [683, 1024]


def test_rgb_formats_decode_exactly() -> None:
    scene = displayed_scene()
    for fmt, extra in [("PNG", {}), ("BMP", {}), ("TIFF", {}), ("WEBP", {"lossless": True})]:
        decoded = decode_image(encode(Image.fromarray(scene), fmt, **extra), max_pixels=MAX)
        assert decoded.format == fmt
        assert np.array_equal(decoded.pixels, scene), fmt


def test_heic_and_avif_decode() -> None:
    scene = displayed_scene()
    for fmt in ("HEIF", "AVIF"):
        if fmt == "HEIF":
            import pillow_heif

            pillow_heif.register_heif_opener()
        data = encode(Image.fromarray(scene), fmt, quality=95)
        decoded = decode_image(data, max_pixels=MAX)
        assert decoded.format == fmt
        assert decoded.pixels.shape == scene.shape
        assert close(decoded.pixels[12, 20], RED, 25), fmt
        assert close(decoded.pixels[47, 72], BLUE, 25), fmt


def test_grayscale_and_one_bit() -> None:
    gray = np.tile(np.arange(0, 250, 5, dtype=np.uint8), (10, 1))  # (10, 50)
    out = decode_image(encode(Image.fromarray(gray, "L"), "PNG"), max_pixels=MAX).pixels
    assert np.array_equal(out, np.repeat(gray[:, :, None], 3, axis=2))
    bits = np.zeros((16, 16), bool)
    bits[:, 8:] = True
    out = decode_image(encode(Image.fromarray(bits), "PNG"), max_pixels=MAX).pixels
    assert (out[:, :8] == 0).all() and (out[:, 8:] == 255).all()


def test_palette_with_transparent_index_is_composited_on_grey() -> None:
    image = Image.new("P", (20, 10))
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    image.paste(1, (10, 0, 20, 10))  # right half index 1 (green), left half index 0 (red)
    data = encode(image, "PNG", transparency=0)  # index 0 transparent
    out = decode_image(data, max_pixels=MAX).pixels
    assert close(out[5, 2], GREY, 0)
    assert close(out[5, 15], (0, 255, 0), 0)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "WEBP"])
def test_rgba_alpha_is_composited_not_dropped(fmt: str) -> None:
    rgba = np.zeros((10, 30, 4), np.uint8)
    rgba[:, :10] = (255, 0, 0, 0)  # fully transparent red: must look like the background
    rgba[:, 10:20] = (255, 0, 0, 255)  # opaque red
    rgba[:, 20:] = (0, 0, 255, 128)  # half transparent blue
    extra = {"lossless": True} if fmt == "WEBP" else {}
    out = decode_image(encode(Image.fromarray(rgba, "RGBA"), fmt, **extra), max_pixels=MAX).pixels
    assert close(out[5, 5], GREY, 0)
    assert close(out[5, 15], (255, 0, 0), 0)
    a = 128 / 255
    assert close(out[5, 25], np.rint((1 - a) * GREY + a * np.array([0, 0, 255])).astype(int), 1)


def test_la_and_pa_modes() -> None:
    la = np.zeros((8, 8, 2), np.uint8)
    la[:, :4] = (200, 0)
    la[:, 4:] = (200, 255)
    out = decode_image(encode(Image.fromarray(la, "LA"), "PNG"), max_pixels=MAX).pixels
    assert close(out[4, 1], GREY, 0) and close(out[4, 6], (200, 200, 200), 0)
    pa = Image.new("PA", (8, 8))
    pa.putpalette([10, 200, 30] * 256)
    pa.putalpha(Image.fromarray(np.where(np.arange(8)[None, :] < 4, 0, 255).astype(np.uint8).repeat(8, 0)))
    out = decode_image(encode(pa, "TIFF"), max_pixels=MAX).pixels
    assert close(out[4, 1], GREY, 0) and close(out[4, 6], (10, 200, 30), 0)


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_converts_to_rgb(fmt: str) -> None:
    cmyk = np.zeros((16, 32, 4), np.uint8)
    cmyk[:, :16] = (255, 0, 0, 0)  # cyan
    cmyk[:, 16:] = (0, 0, 0, 255)  # black
    data = encode(Image.fromarray(cmyk, "CMYK"), fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    out = decode_image(data, max_pixels=MAX).pixels
    tol = 0 if fmt == "TIFF" else 10
    assert close(out[8, 4], (0, 255, 255), tol)
    assert close(out[8, 28], (0, 0, 0), tol)


@pytest.mark.parametrize(("mode", "fmt"), [("I;16", "PNG"), ("I;16B", "TIFF"), ("I;16", "TIFF")])
def test_sixteen_bit_is_scaled_by_its_range_not_clipped(mode: str, fmt: str) -> None:
    # a 12-bit scan in a 16-bit container: plain 8-bit conversion would clip everything above 255
    values = np.tile(np.linspace(0, 4095, 64).round().astype(np.uint16), (4, 1))
    dtype = ">u2" if mode == "I;16B" else "<u2"
    image = Image.frombytes(mode, (64, 4), values.astype(dtype).tobytes())
    out = decode_image(encode(image, fmt), max_pixels=MAX).pixels
    assert out.shape == (4, 64, 3)
    assert out[0, 0, 0] == 0 and out[0, -1, 0] == 255
    assert abs(int(out[0, 32, 0]) - round(values[0, 32] / 4095 * 255)) <= 1
    assert (np.diff(out[0, :, 0].astype(int)) >= 0).all()  # monotone: no wrap-around or clipping


def test_thirty_two_bit_integer_and_float_images() -> None:
    ints = np.tile(np.linspace(-70000, 70000, 50).astype(np.int32), (3, 1))
    out = decode_image(encode(Image.fromarray(ints, "I"), "TIFF"), max_pixels=MAX).pixels
    assert out[0, 0, 0] == 0 and out[0, -1, 0] == 255 and abs(int(out[0, 25, 0]) - 130) <= 2
    floats = np.tile(np.linspace(-1.0, 1.0, 50, dtype=np.float32), (3, 1))
    floats[1, 3] = np.nan
    out = decode_image(encode(Image.fromarray(floats, "F"), "TIFF"), max_pixels=MAX).pixels
    assert out[0, 0, 0] == 0 and out[0, -1, 0] == 255
    assert out[1, 3, 0] == 0  # NaN does not poison the range
    assert (np.diff(out[0, :, 0].astype(int)) >= 0).all()


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animation_gives_its_first_frame(fmt: str) -> None:
    frames = [Image.new("RGB", (16, 16), RED), Image.new("RGB", (16, 16), BLUE)]
    extra = {"lossless": True} if fmt == "WEBP" else {}
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **extra)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 2
    out = decode_image(data, max_pixels=MAX).pixels
    assert close(out[8, 8], RED, 3)


def test_sniffing_ignores_names_and_content_types() -> None:
    png = encode(Image.new("RGB", (4, 4)), "PNG")
    assert sniff_format(png[:16]) == "PNG"
    assert sniff_format(b"%PDF-1.7\n") is None
    ftyp = b"\x00\x00\x00\x1cftyp"
    assert sniff_format(ftyp + b"mif1\x00\x00\x00\x00mif1heic") == "HEIF"
    assert sniff_format(ftyp + b"mif1\x00\x00\x00\x00mif1avif") == "AVIF"
    assert sniff_format(ftyp + b"isom\x00\x00\x02\x00isomiso2") is None  # an MP4 video
    assert sniff_format(b"") is None


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height 8-bit RGB pixels, with a tiny empty IDAT."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def test_pixel_limit_is_checked_from_the_header() -> None:
    data = _png_header_only(3000, 2000)
    with pytest.raises(ImageTooLargeError) as info:
        decode_image(data, max_pixels=5_000_000)
    assert info.value.message == (
        "image too large: 3000x2000 = 6,000,000 pixels; the limit is 5,000,000 pixels, "
        "downscale it and try again"
    )
    # far beyond Pillow's own bomb guard: still a 413-type error, not a crash
    with pytest.raises(ImageTooLargeError):
        decode_image(_png_header_only(100_000, 100_000), max_pixels=MAX)


def test_truncated_and_damaged_files() -> None:
    png = encode(Image.fromarray(displayed_scene()), "PNG")
    with pytest.raises(InvalidImageError, match="could not decode the PNG image: the file is truncated"):
        decode_image(png[: len(png) // 2], max_pixels=MAX)
    jpeg = encode(Image.fromarray(displayed_scene()), "JPEG")
    for cut in (300, len(jpeg) - 200):  # in the header, in the scan data
        with pytest.raises(InvalidImageError, match="could not decode the JPEG image"):
            decode_image(jpeg[:cut], max_pixels=MAX)
    with pytest.raises(InvalidImageError, match="could not decode the PNG image"):
        decode_image(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10, max_pixels=MAX)
    with pytest.raises(UnsupportedImageTypeError):
        decode_image(b"just some text, named photo.jpg", max_pixels=MAX)
    with pytest.raises(InvalidImageError, match="empty"):
        decode_image(b"", max_pixels=MAX)


def test_every_mode_through_the_api_is_a_200(
    client: TestClient, make_client: Callable[..., TestClient]
) -> None:
    """The decoder paths above, end to end: each mode gets an embedding, never a 5xx."""
    uploads = {
        "rgba.png": encode(Image.new("RGBA", (40, 30), (10, 20, 30, 100)), "PNG"),
        "p.gif": encode(Image.new("P", (40, 30)), "GIF"),
        "i16.png": encode(Image.frombytes("I;16", (40, 30), np.arange(1200, dtype="<u2").tobytes()), "PNG"),
        "f.tiff": encode(Image.fromarray(np.ones((30, 40), np.float32)), "TIFF"),
        "cmyk.jpg": encode(Image.new("CMYK", (40, 30), (0, 100, 0, 0)), "JPEG"),
        "l.webp": encode(Image.new("L", (40, 30), 77), "WEBP"),
    }
    for name, data in uploads.items():
        response = post_image(client, data, name, "application/octet-stream")
        assert response.status_code == 200, (name, response.text)
        assert response.json()["original_size"] == [30, 40]
