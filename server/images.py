"""Upload bytes -> an RGB uint8 picture the encoder can take, or a clear domain error.

The type is decided by sniffing the first bytes (never the file name or the declared content type), the
pixel count is checked from the header before any pixel is decoded (decompression bombs), and every mode
Pillow can open is brought to RGB without losing the picture:

* EXIF orientation is applied, so ``original_size`` and every pixel are as a person sees the photo;
* CMYK goes through its embedded ICC profile to sRGB when it has one, else Pillow's conversion;
* modes with alpha or a palette (P, PA, LA, La, RGBA, RGBa) and 1-bit images are composited on a neutral
  mid grey (``BACKGROUND``), so transparent areas neither vanish nor turn black;
* 16-bit (I;16, I;16B, I;16L, I) and float (F) images are scaled from their actual finite value range to
  0..255 (a 12-bit scan in a 16-bit container is not left near-black, and nothing is clipped);
* animations (GIF, APNG, WebP, multi-page TIFF) give their first frame.
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass
from typing import Final

import numpy as np
from PIL import Image, ImageCms, ImageOps

from clicksam.server.errors import ImageTooLargeError, InvalidImageError, UnsupportedImageTypeError

logger = logging.getLogger(__name__)

#: neutral mid grey that transparent pixels are composited on (RGB)
BACKGROUND: Final[tuple[int, int, int]] = (128, 128, 128)

#: formats we accept, by the Pillow format name the sniffer returns
SUPPORTED_FORMATS: Final[tuple[str, ...]] = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "HEIF", "AVIF")

# ISO-BMFF brands (bytes 8..12 of an ``ftyp`` box) that mean HEIF/HEIC or AVIF
_HEIF_BRANDS: Final[frozenset[bytes]] = frozenset(
    {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}
)
_AVIF_BRANDS: Final[frozenset[bytes]] = frozenset({b"avif", b"avis"})

_SIXTEEN_BIT_MODES: Final[frozenset[str]] = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
_ALPHA_OR_PALETTE_MODES: Final[frozenset[str]] = frozenset({"P", "PA", "LA", "La", "RGBA", "RGBa", "1"})

_heif_registered = False


@dataclass(frozen=True)
class DecodedImage:
    """A decoded upload.

    Attributes:
        pixels: (H, W, 3) uint8 RGB in the original image frame (after EXIF orientation), C-contiguous.
        format: the sniffed format (one of ``SUPPORTED_FORMATS``).
        source_mode: the Pillow mode of the first frame before conversion (for logs and tests).
    """

    pixels: np.ndarray
    format: str
    source_mode: str


def sniff_format(head: bytes) -> str | None:
    """Name the image format from the first bytes of a file, or None when it is none we accept.

    Args:
        head: the first bytes of the upload (64 are enough: the ISO-BMFF ``ftyp`` box of HEIF/AVIF lists
            its compatible brands there).
    """
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:2] == b"BM":
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        box_size = int.from_bytes(head[:4], "big")
        compatible = head[16 : min(box_size, len(head))]  # 4-byte brands after the minor version
        # generic image brands (mif1/msf1) name the codec only among the compatible brands
        if brand in _AVIF_BRANDS or (brand in (b"mif1", b"msf1") and b"avif" in compatible):
            return "AVIF"
        if brand in _HEIF_BRANDS:
            return "HEIF"
    return None


def _register_heif() -> None:
    """Teach Pillow HEIF/HEIC (pillow-heif) on first use, not at import."""
    global _heif_registered
    if not _heif_registered:
        import pillow_heif

        pillow_heif.register_heif_opener()
        _heif_registered = True


def _scale_to_uint8(values: np.ndarray) -> np.ndarray:
    """Map a 2-D array of any numeric dtype linearly from its finite min..max onto 0..255 (uint8).

    Non-finite values (NaN, inf in float images) become 0; a constant image becomes 0 if it is 0 and
    mid grey otherwise, so a flat frame neither divides by zero nor looks like black.
    """
    data = values.astype(np.float64)
    finite = np.isfinite(data)
    if not finite.any():
        return np.zeros(data.shape, np.uint8)
    lo = float(data[finite].min())
    hi = float(data[finite].max())
    out = np.zeros(data.shape, np.float64)
    if hi > lo:
        out[finite] = (data[finite] - lo) * (255.0 / (hi - lo))
    elif hi != 0.0:
        out[finite] = 128.0
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _composite_on_background(image: Image.Image) -> Image.Image:
    """RGB of an image with alpha or a palette, its transparent parts laid on ``BACKGROUND``."""
    rgba = image.convert("RGBA")  # palettes with a transparent index become real alpha here
    background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _cmyk_to_rgb(image: Image.Image) -> Image.Image:
    """RGB of a CMYK image, through its embedded ICC profile to sRGB when it has a usable one."""
    icc = image.info.get("icc_profile")
    if icc:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            converted = ImageCms.profileToProfile(
                image, source, ImageCms.createProfile("sRGB"), outputMode="RGB"
            )
            if converted is not None:
                return converted
        except (ImageCms.PyCMSError, OSError, ValueError) as exc:
            # a broken profile is no reason to refuse the picture: the plain conversion is close
            logger.info("ignoring unusable ICC profile of a CMYK upload: %s", exc)
    return image.convert("RGB")


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert one already oriented frame of any mode to RGB (see the module docstring for the rules)."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _SIXTEEN_BIT_MODES or mode == "F":
        gray = _scale_to_uint8(np.asarray(image))
        return Image.fromarray(gray, mode="L").convert("RGB")
    if mode in _ALPHA_OR_PALETTE_MODES:
        return _composite_on_background(image)
    if mode == "CMYK":
        return _cmyk_to_rgb(image)
    if mode == "LAB":
        lab_to_srgb = ImageCms.buildTransform(
            ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB"
        )
        converted = ImageCms.applyTransform(image, lab_to_srgb)
        assert converted is not None
        return converted
    # L, YCbCr, HSV and whatever else Pillow knows how to turn into RGB
    return image.convert("RGB")


def decode_image(data: bytes, *, max_pixels: int) -> DecodedImage:
    """Decode an upload to RGB uint8 pixels in the original (EXIF-oriented) frame.

    Args:
        data: the uploaded file's bytes (already limited in size by the caller).
        max_pixels: largest width x height accepted; checked from the header before decoding.

    Returns:
        The decoded image; ``pixels`` is (H, W, 3) uint8 RGB.

    Raises:
        InvalidImageError: empty, truncated or undecodable data of a supported type.
        UnsupportedImageTypeError: the bytes are not JPEG, PNG, GIF, WebP, BMP, TIFF, HEIF/HEIC or AVIF.
        ImageTooLargeError: the header declares more than ``max_pixels`` pixels.
    """
    if not data:
        raise InvalidImageError("the uploaded file is empty; send an image file in the 'image' field")
    fmt = sniff_format(data[:64])
    if fmt is None:
        raise UnsupportedImageTypeError(
            "unsupported file type: send a JPEG, PNG, GIF, WebP, BMP, TIFF, HEIC/HEIF or AVIF image"
        )
    if fmt == "HEIF":
        _register_heif()
    formats = ["HEIF"] if fmt == "HEIF" else [fmt]
    try:
        with warnings.catch_warnings():
            # our own pixel limit is checked below; Pillow's bomb warning would only repeat it
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=formats)
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(_too_many_pixels_message(None, max_pixels)) from exc
    except Exception as exc:
        # Pillow's format plugins raise many exception types on hostile input (SyntaxError, struct.error,
        # IndexError, ...): every one of them means "this file cannot be read", never a server fault
        logger.info("unreadable %s upload: %r", fmt, exc)
        raise InvalidImageError(_damaged_message(fmt)) from exc
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise ImageTooLargeError(_too_many_pixels_message((width, height), max_pixels))
        if width == 0 or height == 0:
            raise InvalidImageError(f"the {fmt} image has no pixels ({width}x{height})")
        source_mode = image.mode
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image.seek(0)  # first frame of an animation or a multi-page file
                image.load()
                oriented = ImageOps.exif_transpose(image)
                rgb = _to_rgb(oriented)
                pixels = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))
        except Image.DecompressionBombError as exc:
            raise ImageTooLargeError(_too_many_pixels_message((width, height), max_pixels)) from exc
        except Exception as exc:
            # truncated data surfaces here as OSError("image file is truncated"), others as above
            logger.info("undecodable %s upload: %r", fmt, exc)
            raise InvalidImageError(_damaged_message(fmt)) from exc
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise InvalidImageError(f"the {fmt} image decoded to an unexpected shape {pixels.shape}")
    return DecodedImage(pixels=pixels, format=fmt, source_mode=source_mode)


def _too_many_pixels_message(size: tuple[int, int] | None, max_pixels: int) -> str:
    what = f"{size[0]}x{size[1]} = {size[0] * size[1]:,} pixels" if size else "too many pixels"
    return f"image too large: {what}; the limit is {max_pixels:,} pixels, downscale it and try again"


def _damaged_message(fmt: str) -> str:
    return f"could not decode the {fmt} image: the file is truncated or damaged; re-export or re-save it"
