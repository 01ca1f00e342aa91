"""A tiny valid PNG, built with zlib and struct only (text-to-image answers).

The image is an RGB gradient whose colours come from the prompt's digest, so the same prompt
always gives the same bytes. Sizes are clamped to 64x64 to keep answers small.
"""

from __future__ import annotations

import struct
import zlib

MAX_SIDE = 64
_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(tag: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(tag + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)


def make_png(width: int, height: int, seed: bytes) -> bytes:
    """An 8-bit RGB PNG of (clamped) `width` x `height` coloured from `seed` (>= 3 bytes)."""
    width = max(1, min(MAX_SIDE, width))
    height = max(1, min(MAX_SIDE, height))
    r0, g0, b0 = seed[0], seed[1], seed[2]
    rows = []
    for y in range(height):
        row = bytearray(b"\x00")  # filter type 0 (None) for every scanline
        for x in range(width):
            row += bytes(((r0 + 3 * x) % 256, (g0 + 3 * y) % 256, (b0 + x + y) % 256))
        rows.append(bytes(row))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"".join(rows)))
            + _chunk(b"IEND", b""))
