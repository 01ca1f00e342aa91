"""The simulator served in the test's own event loop on a real loopback port, for the real clients.

Sync clients (`InferenceClient`, `openai.OpenAI`) must run in a thread (`asyncio.to_thread`) while
the server runs in the loop; async clients are awaited directly.
"""

from __future__ import annotations

import base64
import io
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import openai
from huggingface_hub import AsyncInferenceClient, InferenceClient
from PIL import Image

from gateway.simulator.app import SIM_STATE, create_simulator_app
from gateway.simulator.config import SimConfig
from gateway.simulator.state import SimState
from tests.support.serving import serving

FAKE_TOKEN = "hf_fake_test_token"


@dataclass
class LiveSimulator:
    """A running simulator: its base URL and its state."""

    base: str
    state: SimState

    def model_url(self, model_id: str) -> str:
        """The router URL of a model on the hf-inference provider."""
        return f"{self.base}/hf-inference/models/{model_id}"

    def hf(self, model_id: str) -> InferenceClient:
        """A sync client bound to that model URL."""
        return InferenceClient(model=self.model_url(model_id), token=FAKE_TOKEN)

    def openai(self, **kwargs: Any) -> openai.OpenAI:
        """An openai client on the simulator's `/v1`."""
        return openai.OpenAI(base_url=f"{self.base}/v1/", api_key="sk-fake", **kwargs)

    def hf_async(self, model_id: str) -> AsyncInferenceClient:
        """An async client bound to that model URL."""
        return AsyncInferenceClient(model=self.model_url(model_id), token=FAKE_TOKEN)


@asynccontextmanager
async def live_simulator(config: SimConfig | None = None) -> AsyncIterator[LiveSimulator]:
    """Serve a fresh simulator on 127.0.0.1 (a free port) until the block ends."""
    app = create_simulator_app(config)
    async with serving(app) as url:  # handler_cancellation off, as in `hf-gateway simulate`
        yield LiveSimulator(url, app[SIM_STATE])


def png_bytes(width: int = 20, height: int = 12, colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A PNG made by Pillow (an independent encoder from the simulator's)."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, "PNG")
    return buffer.getvalue()


def wav_bytes(seconds: float = 0.8, rate: int = 8000) -> bytes:
    """A silent mono 16-bit WAV of `seconds`."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\x00\x00" * int(seconds * rate))
    return buffer.getvalue()


def b64(data: bytes) -> str:
    """Base64 text, as InferenceClient encodes a file into JSON `inputs`."""
    return base64.b64encode(data).decode()
