"""The one image decoder both frameworks' batches come from (Pillow, imported lazily here only).

Every pixel a run sees from an ImageNet-format dataset is made here, on the host side of the
loader, so PyTorch and TensorFlow receive byte-identical uint8 arrays:

* `decode(data, path)`: JPEG bytes -> RGB uint8 (H, W, 3). The format is sniffed from the
  first bytes: anything but JPEG (a PNG renamed .JPEG, as ILSVRC-2012 train holds one) is a
  `BadImage`; so is a truncated or corrupt stream (Pillow's LOAD_TRUNCATED_IMAGES stays False)
  and an image over MAX_PIXELS (a decompression bomb). CMYK and grayscale JPEGs (ILSVRC-2012
  train holds 22 CMYK ones) are converted to RGB with Pillow's `convert("RGB")`: refusing them
  would drop real images, and the conversion is deterministic.
* `rrc_box(u, w, h, scale, ratio)`: torchvision's RandomResizedCrop rule (10 attempts, then the
  central-crop fallback), driven by pre-drawn uniforms `u` (10 x 4: area, log-ratio, top, left)
  instead of a live generator: the decisions are drawn first (`augment.plan_epoch`), the pixels
  follow.
* `crop_resize(img, box, size)`: crop and resize in one pass with ONE named filter,
  Pillow's BILINEAR with `reducing_gap=None` (the exact, antialiased filter; no JPEG draft
  shortcut), which torchvision's PIL path also uses.
* `center_box(w, h, size, crop_fraction)`: evaluation: resize the shorter side to
  round(size / crop_fraction) (256 for 224 at 0.875), then keep the central size x size square,
  expressed as one box in source coordinates so it too is a single crop_resize.

`encode_jpeg` writes the synthetic datasets' files.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from runner.errors import DatasetError

if TYPE_CHECKING:
    from PIL.Image import Image

FILTER = "bilinear"  # Pillow Image.Resampling.BILINEAR, reducing_gap=None
MAX_PIXELS = 1 << 26  # 67 M pixels: ILSVRC-2012's largest image has 12 M (a bomb is refused)
MAX_FILE_BYTES = 64 << 20
ATTEMPTS = 10  # torchvision's RandomResizedCrop tries 10 boxes before its fallback

Box = tuple[float, float, float, float]  # left, top, right, bottom in source pixels


class BadImage(DatasetError):
    """An image file the decoder cannot or will not turn into pixels (the reason names why)."""


def sniff(head: bytes) -> str:
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:4] in (b"GIF8",) or head[:2] == b"BM" or head[:4] == b"RIFF":
        return "other image format"
    return "not an image"


def pillow_version() -> str:
    import PIL

    return PIL.__version__


def open_rgb(data: bytes, path: str | Path = "") -> Image:
    """Decode JPEG bytes fully into an RGB Pillow image, or raise BadImage naming the path."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    kind = sniff(data[:8])
    if kind != "jpeg":
        raise BadImage(f"is {'a PNG' if kind == 'png' else kind}, not a JPEG", file=path,
                       fix="convert it to JPEG or remove it from the dataset")
    try:
        img = PILImage.open(io.BytesIO(data), formats=("JPEG",))
        w, h = img.size
        if w * h > MAX_PIXELS or w < 1 or h < 1:
            raise BadImage(f"is {w}x{h} pixels, more than the {MAX_PIXELS} allowed", file=path)
        img.load()
    except BadImage:
        raise
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, PILImage.DecompressionBombError) as exc:
        reason = "is truncated" if "truncated" in str(exc).lower() else f"cannot be decoded ({exc})"
        raise BadImage(reason, file=path, fix="restore the file from the original archive or remove it") from None
    if img.mode != "RGB":  # CMYK, L (grayscale), ...: one deterministic conversion
        img = img.convert("RGB")
    return img


def decode(data: bytes, path: str | Path = "") -> np.ndarray:
    return np.asarray(open_rgb(data, path), dtype=np.uint8)


def rrc_box(u: np.ndarray, w: int, h: int, scale: tuple[float, float], ratio: tuple[float, float]) -> Box:
    """torchvision RandomResizedCrop.get_params with pre-drawn uniforms u[ATTEMPTS, 4]."""
    area = w * h
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for a_u, r_u, top_u, left_u in u:
        target = area * (scale[0] + (scale[1] - scale[0]) * float(a_u))
        aspect = math.exp(log_lo + (log_hi - log_lo) * float(r_u))
        cw = int(round(math.sqrt(target * aspect)))
        ch = int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            top = min(int(float(top_u) * (h - ch + 1)), h - ch)
            left = min(int(float(left_u) * (w - cw + 1)), w - cw)
            return (left, top, left + cw, top + ch)
    in_ratio = w / h
    if in_ratio < min(ratio):
        cw, ch = w, int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        cw, ch = int(round(h * max(ratio))), h
    else:
        cw, ch = w, h
    top, left = (h - ch) // 2, (w - cw) // 2
    return (left, top, left + cw, top + ch)


def center_box(w: int, h: int, size: int, crop_fraction: float) -> Box:
    """Resize-shorter-side-then-center-crop, as a box in source pixels (one resampling pass)."""
    short = int(round(size / crop_fraction))
    s = short / min(w, h)  # scale factor source -> resized
    rw, rh = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
    top = int(round((rh - size) / 2.0))
    left = int(round((rw - size) / 2.0))
    return (left / s, top / s, (left + size) / s, (top + size) / s)


def crop_resize(img: Image, box: Box, size: int) -> np.ndarray:
    """The box of img resampled to size x size with BILINEAR (reducing_gap=None): uint8 (size, size, 3)."""
    from PIL import Image as PILImage

    out = img.resize((size, size), PILImage.Resampling.BILINEAR, box=box, reducing_gap=None)
    return np.asarray(out, dtype=np.uint8)


def from_array(x: np.ndarray) -> Image:
    from PIL import Image as PILImage

    return PILImage.fromarray(np.ascontiguousarray(x), mode="RGB")


def encode_jpeg(x: np.ndarray, quality: int = 90) -> bytes:
    """uint8 (H, W, 3) -> baseline JPEG bytes (deterministic for the same Pillow/libjpeg)."""
    buf = io.BytesIO()
    from_array(x).save(buf, format="JPEG", quality=quality, optimize=False, progressive=False)
    return buf.getvalue()
