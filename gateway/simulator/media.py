"""Recognising the image and audio bytes a request carries, and reading an image's size.

HF's binary tasks take the file itself: as the raw request body (no `Content-Type`, or the file's
type) when the client has no parameters to send, or base64 in the JSON `inputs` when it has
(huggingface_hub 2.4.0, `HFInferenceBinaryInputTask`). Task detection and the renderers both need
to know what the bytes are, so this module sniffs them by their magic numbers, the way an image
or audio library would, and never trusts the declared type alone.

Invariants: `sniff` looks at no more than the first few bytes (so detection can sniff a decoded
prefix of a base64 string); `image_size` returns None rather than guess when a header is not
understood.
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass
from typing import Literal

Kind = Literal["image", "audio"]
SNIFF_BYTES = 48
"""Bytes `sniff` may need; a multiple of 3, so its base64 form is a whole number of quads."""


@dataclass(frozen=True)
class Media:
    """What a run of bytes is: its kind and its MIME type."""

    kind: Kind
    mime: str


def sniff(data: bytes) -> Media | None:
    """The media type of `data` by its leading bytes, or None when unrecognised."""
    head = data[:SNIFF_BYTES]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return Media("image", "image/png")
    if head.startswith(b"\xff\xd8\xff"):
        return Media("image", "image/jpeg")
    if head.startswith((b"GIF87a", b"GIF89a")):
        return Media("image", "image/gif")
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return Media("image", "image/webp")
    if head.startswith(b"BM") and len(head) >= 26:
        return Media("image", "image/bmp")
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return Media("image", "image/tiff")
    return _sniff_audio(head)


def _sniff_audio(head: bytes) -> Media | None:
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return Media("audio", "audio/wav")
    if head.startswith(b"fLaC"):
        return Media("audio", "audio/flac")
    if head.startswith(b"OggS"):
        return Media("audio", "audio/ogg")
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return Media("audio", "audio/mpeg")
    if head[4:8] == b"ftyp":
        return Media("audio", "audio/mp4")
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return Media("audio", "audio/webm")
    return None


def declared_kind(content_type: str) -> Kind | None:
    """The kind a `Content-Type` header declares (`image/*`, `audio/*`), if any."""
    major = content_type.split("/", 1)[0].strip().lower()
    if major == "image":
        return "image"
    if major == "audio":
        return "audio"
    return None


def _strip_data_url(text: str) -> str:
    # `data:<type>;base64,<payload>`: only the payload is base64.
    if text.startswith("data:"):
        return text.partition(",")[2]
    return text


def sniff_base64(text: str) -> Media | None:
    """The media type of base64 `text` (or a `data:` URL), decoding only the prefix `sniff` needs."""
    prefix = _strip_data_url(text)[: SNIFF_BYTES // 3 * 4]
    try:
        return sniff(base64.b64decode(prefix, validate=True))
    except (binascii.Error, ValueError):
        return None


def decode_base64(text: str) -> bytes | None:
    """Strict base64 (a `data:` URL prefix is tolerated), or None when `text` is not base64."""
    try:
        return base64.b64decode(_strip_data_url(text), validate=True)
    except (binascii.Error, ValueError):
        return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, GIF, BMP or JPEG header; None for other formats."""
    if data.startswith(b"\x89PNG") and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if data.startswith(b"GIF") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return int(width), int(height)
    if data.startswith(b"BM") and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return abs(int(width)), abs(int(height))
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    return None


_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # frame headers, not DHT/JPG/DAC


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    # Walk the marker segments up to the first start-of-frame, which holds the dimensions.
    at = 2
    while at + 9 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        (length,) = struct.unpack(">H", data[at + 2: at + 4])
        if marker in _SOF_MARKERS:
            height, width = struct.unpack(">HH", data[at + 5: at + 9])
            return int(width), int(height)
        at += 2 + length
    return None
