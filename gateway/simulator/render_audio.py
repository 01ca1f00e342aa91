"""Renderers for the audio tasks: speech recognition, audio classification, audio-to-audio,
text-to-speech and text-to-audio.

Shapes, as huggingface_hub 2.4.0 parses them (`inference/_generated/types/`):
    automatic-speech-recognition   {text} (+ `chunks: [{text, timestamp: [start, end]}]` with
                                   `return_timestamps`)
    audio-classification           [{label, score}] sorted
    audio-to-audio                 [{label, content-type, blob}], `blob` a base64 WAV
    text-to-speech, text-to-audio  raw WAV bytes (`audio/wav`)

HF's own text-to-speech answers `audio/flac`; the simulator answers WAV because the standard
library can write it and every audio reader opens it (the client hands the bytes back untouched).
Every value is a pure function of the model id and the input (the file's SHA-256, or the text).
"""

from __future__ import annotations

import base64
from typing import Any

from gateway.simulator import outputs
from gateway.simulator.calls import SimCall
from gateway.simulator.media_inputs import (
    MediaInput,
    file_digest,
    media_input,
    require_kind,
)
from gateway.simulator.task_render import int_param, labels, text_input
from gateway.simulator.textgen import digest_stream, generate
from gateway.simulator.wav import audio_seconds, make_wav
from gateway.simulator.wire import Body, Rendered, json_body

AUDIO_LABELS = ("Speech", "Music", "Silence", "Noise", "Laughter")
WORDS_PER_SECOND = 2.5
MAX_WORDS = 50
SPEECH_SECONDS_PER_WORD = 0.3


def audio_input(call: SimCall) -> MediaInput:
    """The request's audio file (raw or base64) and parameters; a non-audio file is rejected."""
    found = media_input(call)
    require_kind(call, found.data, "audio")
    return found


def transcript(model: str, data: bytes, params: dict[str, Any]) -> dict[str, Any]:
    """About 2.5 words per second of input (1 to 50), with per-word chunks when timestamps are asked."""
    seconds = audio_seconds(data)
    count = max(1, min(MAX_WORDS, round(seconds * WORDS_PER_SECOND)))
    words = [t.text.strip() for t in generate(model, file_digest(data), count).tokens]
    out: dict[str, Any] = {"text": " ".join(words)}
    if params.get("return_timestamps"):
        step = seconds / count
        out["chunks"] = [{"text": word, "timestamp": [round(i * step, 2), round((i + 1) * step, 2)]}
                         for i, word in enumerate(words)]
    return out


def render_speech_recognition(call: SimCall) -> Rendered:
    """`{text}`, plus `chunks` with `return_timestamps`."""
    found = audio_input(call)
    return json_body(transcript(call.model, found.data, found.params))


def render_audio_classification(call: SimCall) -> Rendered:
    """`[{label, score}]` over the labels, sorted, cut to `top_k` (default 5)."""
    found = audio_input(call)
    top_k = int_param(call, found.params, "top_k") or 5
    return json_body(outputs.classification(call.model, file_digest(found.data), labels(call, AUDIO_LABELS), top_k))


def render_audio_to_audio(call: SimCall) -> Rendered:
    """One cleaned-up source as long as the input: `[{label, content-type, blob}]`."""
    found = audio_input(call)
    seed = digest_stream(call.model, file_digest(found.data), "audio-to-audio", size=1)
    blob = base64.b64encode(make_wav(audio_seconds(found.data), seed)).decode()
    return json_body([{"label": "label_0", "content-type": "audio/wav", "blob": blob}])


def render_speech(call: SimCall) -> Rendered:
    """Text-to-speech and text-to-audio: a WAV tone, 0.3 s per word of input (at most 2 s)."""
    text = text_input(call)
    seconds = SPEECH_SECONDS_PER_WORD * max(1, len(text.split()))
    return Body(make_wav(seconds, digest_stream(call.model, text, "speech", size=1)), "audio/wav")
