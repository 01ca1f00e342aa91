"""Recognising files by their bytes, reading image sizes, and the PNG masks and WAV tones the
simulator writes (checked with independent decoders: Pillow and the stdlib `wave`)."""

from __future__ import annotations

import base64
import io
import wave

import pytest
from PIL import Image

from gateway.simulator.media import (
    Media,
    declared_kind,
    decode_base64,
    image_size,
    sniff,
    sniff_base64,
)
from gateway.simulator.png import make_mask_png
from gateway.simulator.wav import MAX_SECONDS, SAMPLE_RATE, audio_seconds, make_wav
from tests.support.live_simulator import wav_bytes


def _pillow(fmt: str, size: tuple[int, int] = (13, 7)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (1, 2, 3)).save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(("data", "media"), [
    (_pillow("PNG"), Media("image", "image/png")),
    (_pillow("JPEG"), Media("image", "image/jpeg")),
    (_pillow("GIF"), Media("image", "image/gif")),
    (_pillow("WEBP"), Media("image", "image/webp")),
    (_pillow("BMP"), Media("image", "image/bmp")),
    (_pillow("TIFF"), Media("image", "image/tiff")),
    (wav_bytes(0.1), Media("audio", "audio/wav")),
    (b"fLaC\x00\x00\x00\x22" + bytes(40), Media("audio", "audio/flac")),
    (b"OggS\x00\x02" + bytes(40), Media("audio", "audio/ogg")),
    (b"ID3\x04\x00" + bytes(40), Media("audio", "audio/mpeg")),
    (b"\x00\x00\x00\x20ftypM4A " + bytes(40), Media("audio", "audio/mp4")),
])
def test_files_are_recognised_by_their_magic_bytes(data: bytes, media: Media) -> None:
    assert sniff(data) == media
    assert sniff_base64(base64.b64encode(data).decode()) == media  # from a prefix of the base64 text


@pytest.mark.parametrize("data", [b"", b"hello world", b'{"inputs": "x"}', b"RIFF\x00\x00\x00\x00AVI LIST"])
def test_other_bytes_are_not_files(data: bytes) -> None:
    assert sniff(data) is None


def test_text_that_is_not_base64_is_not_a_file() -> None:
    assert sniff_base64("The goal of life is [MASK].") is None
    assert decode_base64("not base64 at all!") is None
    assert decode_base64(base64.b64encode(b"abc").decode()) == b"abc"
    assert decode_base64("data:image/png;base64," + base64.b64encode(b"abc").decode()) == b"abc"


def test_declared_kind_reads_only_the_major_type() -> None:
    assert declared_kind("image/png") == "image"
    assert declared_kind("Audio/x-wav; rate=16000") == "audio"
    assert declared_kind("application/json") is None and declared_kind("") is None


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP"])
def test_image_size_from_the_header(fmt: str) -> None:
    assert image_size(_pillow(fmt, (31, 17))) == (31, 17)


def test_image_size_is_none_when_the_header_is_not_understood() -> None:
    assert image_size(_pillow("WEBP")) is None
    assert image_size(b"\xff\xd8\xff\xe0") is None  # a JPEG cut before its frame header
    assert image_size(b"not an image") is None


def test_masks_are_one_channel_black_and_white_pngs() -> None:
    data = make_mask_png(6, 4, lambda x, y: x < 2)
    mask = Image.open(io.BytesIO(data))
    assert mask.mode == "L" and mask.size == (6, 4)
    assert list(mask.tobytes()) == [255, 255, 0, 0, 0, 0] * 4
    assert Image.open(io.BytesIO(make_mask_png(500, 1, lambda x, y: True))).size == (64, 1)  # clamped


def test_wav_tones_open_with_the_stdlib_and_are_deterministic() -> None:
    data = make_wav(0.25, b"\x07")
    assert data == make_wav(0.25, b"\x07") and data != make_wav(0.25, b"\x08")
    with wave.open(io.BytesIO(data), "rb") as clip:
        assert (clip.getnchannels(), clip.getsampwidth(), clip.getframerate()) == (1, 2, SAMPLE_RATE)
        assert clip.getnframes() == SAMPLE_RATE // 4
    assert audio_seconds(data) == pytest.approx(0.25)
    assert audio_seconds(make_wav(60, b"\x00")) == pytest.approx(MAX_SECONDS)  # clamped


def test_audio_length_is_read_from_a_wav_header_and_estimated_otherwise() -> None:
    assert audio_seconds(wav_bytes(0.8, rate=8000)) == pytest.approx(0.8)
    assert audio_seconds(b"fLaC" + bytes(31_996)) == pytest.approx(2.0)  # 16 kB a second
    broken = b"RIFF\x00\x00\x00\x00WAVEbroken"
    assert audio_seconds(broken) == pytest.approx(len(broken) / 16_000)  # an unreadable header: estimated
