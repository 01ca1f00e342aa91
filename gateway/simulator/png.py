"""Tiny valid PNGs, built with zlib and struct only (image answers and segmentation masks).

`make_png` draws an RGB gradient whose colours come from a digest, so the same request always
gives the same bytes; `make_mask_png` draws a one-channel (mode "L") black-and-white mask, the
form HF's image-segmentation masks take. Sizes are clamped to 64x64 to keep answers small.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

MAX_SIDE = 64
_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_GRAY, _RGB = 0, 2  # PNG colour types


def _chunk(tag: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(tag + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)


def clamp_side(side: int) -> int:
    """A requested width or height brought into 1..MAX_SIDE."""
    return max(1, min(MAX_SIDE, side))


def _encode(width: int, height: int, colour_type: int, rows: list[bytes]) -> bytes:
    # Each scanline is prefixed with filter type 0 (None).
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    pixels = zlib.compress(b"".join(b"\x00" + row for row in rows))
    return _SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", pixels) + _chunk(b"IEND", b"")


def make_png(width: int, height: int, seed: bytes) -> bytes:
    """An 8-bit RGB PNG of (clamped) `width` x `height` coloured from `seed` (>= 3 bytes)."""
    width, height = clamp_side(width), clamp_side(height)
    r0, g0, b0 = seed[0], seed[1], seed[2]
    rows = [
        b"".join(bytes(((r0 + 3 * x) % 256, (g0 + 3 * y) % 256, (b0 + x + y) % 256)) for x in range(width))
        for y in range(height)
    ]
    return _encode(width, height, _RGB, rows)


def make_mask_png(width: int, height: int, inside: Callable[[int, int], bool]) -> bytes:
    """An 8-bit grayscale PNG of (clamped) size: 255 where `inside(x, y)`, else 0."""
    width, height = clamp_side(width), clamp_side(height)
    rows = [bytes(255 if inside(x, y) else 0 for x in range(width)) for y in range(height)]
    return _encode(width, height, _GRAY, rows)
