"""Tiny valid WAV files (text-to-speech and audio-to-audio answers) and reading an input's length.

Built with the stdlib `wave` module: 16-bit mono PCM at `SAMPLE_RATE`, a tone whose pitch comes
from a digest, so the same request always gives the same bytes. Durations are capped at
`MAX_SECONDS` to keep answers small.
"""

from __future__ import annotations

import io
import math
import struct
import wave

SAMPLE_RATE = 16_000
MAX_SECONDS = 2.0
MIN_SECONDS = 0.05
_AMPLITUDE = 8_000
_ASSUMED_BYTES_PER_SECOND = 16_000  # compressed audio (FLAC, MP3...) whose length we do not parse


def make_wav(seconds: float, seed: bytes) -> bytes:
    """A mono 16-bit WAV of `seconds` (clamped) of a tone pitched by `seed` (>= 1 byte)."""
    seconds = max(MIN_SECONDS, min(MAX_SECONDS, seconds))
    frames = round(SAMPLE_RATE * seconds)
    pitch = 220.0 + 4.0 * seed[0]
    step = 2.0 * math.pi * pitch / SAMPLE_RATE
    samples = struct.pack(f"<{frames}h", *(int(_AMPLITUDE * math.sin(step * i)) for i in range(frames)))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(samples)
    return buffer.getvalue()


def audio_seconds(data: bytes) -> float:
    """The length of a WAV input from its header; other formats are estimated from their size."""
    if data.startswith(b"RIFF") and data[8:12] == b"WAVE":
        try:
            with wave.open(io.BytesIO(data), "rb") as clip:
                rate = clip.getframerate()
                return clip.getnframes() / rate if rate else 0.0
        except (wave.Error, EOFError, struct.error):
            pass  # a WAV header we cannot read: fall back to the size estimate
    return len(data) / _ASSUMED_BYTES_PER_SECOND
