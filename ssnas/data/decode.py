"""Decoding image files into uint8 arrays at a square size: the in-memory cache and the streaming path both decode
with these functions, so both see the same pixels (torchvision's JPEG/PNG decoders where they apply, PIL for the
rest and for resizing, bicubic)."""
from __future__ import annotations

import warnings
from typing import Any, Callable

import numpy as np
import torch

from ssnas.errors import UserError

def import_decoders() -> None:
    """Import torchvision's decoders and PIL here, before worker processes fork: each worker would otherwise
    import them itself, at every epoch (seconds each on a busy machine)."""
    torchvision_decoder()
    from PIL import Image  # noqa: F401


def decode_files(files: list[str], size: int) -> np.ndarray:
    """Decode ``files`` into one uint8 array [N, size, size, 3]."""
    out = np.empty((len(files), size, size, 3), dtype=np.uint8)
    decode = torchvision_decoder()
    threads = torch.get_num_threads()
    # one image at a time is too little work to share: with torch's thread pool on, decoding a 32x32 JPEG
    # was 8x slower on a busy 2-core machine
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            # torchvision 0.29 deprecates its decoders, but they are ~4x faster than PIL on small JPEGs
            warnings.simplefilter("ignore", DeprecationWarning)
            for i, path in enumerate(files):
                out[i] = decode_file(path, size, decode)
    finally:
        torch.set_num_threads(threads)
    return out


def torchvision_decoder() -> Callable[[str], np.ndarray | None] | None:
    """A fast JPEG/PNG decoder returning [H, W, 3] uint8, or None where torchvision no longer has one."""
    try:
        from torchvision.io import ImageReadMode, decode_image
    except ImportError:
        return None

    def decode(path: str) -> np.ndarray | None:
        if not path.lower().endswith((".jpg", ".jpeg", ".png")):
            return None
        try:
            with open(path, "rb") as f:
                raw = torch.frombuffer(bytearray(f.read()), dtype=torch.uint8)
            image = decode_image(raw, mode=ImageReadMode.RGB)
        except (RuntimeError, ValueError, OSError):
            return None  # PIL gets a second try and gives the readable error
        if image.dtype != torch.uint8 or image.dim() != 3:
            return None  # 16-bit PNGs and the like: let PIL convert
        return image.permute(1, 2, 0).numpy()

    return decode


def decode_file(path: str, size: int, decode: Callable[[str], np.ndarray | None] | None) -> np.ndarray:
    """One image as uint8 [size, size, 3]: `decode` (torchvision's) first, PIL when it declines; resized with PIL's
    bicubic filter when its size differs."""
    from PIL import Image

    array = decode(path) if decode is not None else None
    if array is not None and array.shape[:2] == (size, size):
        return array
    try:
        image = Image.fromarray(np.ascontiguousarray(array)) if array is not None else open_with_pil(path)
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise UserError(f"cannot read image {path}: {error}; remove or replace the file") from error
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(image)


def open_with_pil(path: str) -> Any:
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")
