"""The binary and question-answering tasks on every HF-style route, driven in-process: pipeline
paths, config pins and labels, the task spec's body forms, a dedicated endpoint's `POST /`,
content types, fast mode, faults and bad input."""

from __future__ import annotations

import base64
import io
import wave
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image

from gateway.core.clock import FakeClock
from gateway.simulator.app import SIM_STATE, create_simulator_app
from gateway.simulator.config import ModelSpec, SimConfig
from tests.support.live_simulator import b64, png_bytes, wav_bytes

PNG, WAV = png_bytes(20, 12), wav_bytes(0.8)
CONFIG = SimConfig(models={
    "acme/pinned": ModelSpec(task="image-segmentation"),
    "acme/pets": ModelSpec(labels=["cat", "dog"]),
})


@pytest.fixture
async def sim() -> AsyncIterator[TestClient]:
    app = create_simulator_app(CONFIG, clock=FakeClock(autojump=True))
    async with TestClient(TestServer(app)) as client:
        yield client


async def send(client: TestClient, path: str, *, raw: bytes | None = None, body: Any = None,
               **headers: str) -> tuple[int, bytes, str]:
    resp = await (client.post(path, data=raw, headers=headers or None) if raw is not None
                  else client.post(path, json=body, headers=headers or None))
    return resp.status, await resp.read(), resp.headers.get("Content-Type", "")


def last_task(client: TestClient) -> str | None:
    app = client.app
    assert app is not None
    return app[SIM_STATE].requests[-1].task


@pytest.mark.parametrize("path", [
    "/hf-inference/models/acme/m/pipeline/object-detection",
    "/models/acme/m/pipeline/object-detection",
    "/pipeline/object-detection/acme/m",
])
async def test_the_pipeline_path_names_the_task_on_router_and_legacy_routes(sim: TestClient, path: str) -> None:
    status, data, content_type = await send(sim, path, raw=PNG)
    assert status == 200 and content_type == "application/json"
    boxes = orjson.loads(data)
    assert boxes and all(set(b) == {"score", "label", "box"} and b["box"]["xmax"] <= 20 for b in boxes)
    assert last_task(sim) == "object-detection"


async def test_config_pins_the_task_and_the_labels(sim: TestClient) -> None:
    status, data, _ = await send(sim, "/hf-inference/models/acme/pinned", raw=PNG)
    assert status == 200 and last_task(sim) == "image-segmentation" and len(orjson.loads(data)) == 3
    status, data, _ = await send(sim, "/models/acme/pets", raw=PNG)
    assert status == 200 and {c["label"] for c in orjson.loads(data)} == {"cat", "dog"}
    status, data, _ = await send(sim, "/models/acme/pets/pipeline/audio-classification", raw=WAV)
    assert status == 200 and {c["label"] for c in orjson.loads(data)} == {"cat", "dog"}


async def test_the_task_specification_body_forms_are_accepted(sim: TestClient) -> None:
    status, data, _ = await send(sim, "/hf-inference/models/dandelin/vilt-b32-finetuned-vqa",
                                 body={"inputs": {"image": b64(PNG), "question": "What colour?"},
                                       "parameters": {"top_k": 2}})
    assert status == 200 and last_task(sim) == "visual-question-answering"
    assert [set(a) for a in orjson.loads(data)] == [{"score", "answer"}] * 2
    status, data, _ = await send(sim, "/hf-inference/models/julien-c/wine-quality",
                                 body={"inputs": {"data": {"ph": ["3.5", "3.2", "3.1"]}}})
    assert status == 200 and len(orjson.loads(data)) == 3 and last_task(sim) == "tabular-classification"
    status, data, _ = await send(sim, "/hf-inference/models/openai/whisper-tiny",
                                 body={"inputs": "data:audio/wav;base64," + b64(WAV)})
    assert status == 200 and len(orjson.loads(data)["text"].split()) == 2


async def test_a_dedicated_endpoint_takes_a_raw_file_at_its_root(sim: TestClient) -> None:
    status, data, _ = await send(sim, "/endpoints/my-vit-classifier/", raw=PNG, **{"Content-Type": "image/png"})
    assert status == 200 and last_task(sim) == "image-classification"
    assert len(orjson.loads(data)) == 5
    status, data, _ = await send(sim, "/endpoints/my-whisper/", raw=WAV)
    assert status == 200 and set(orjson.loads(data)) == {"text"}


async def test_binary_answers_carry_their_content_type(sim: TestClient) -> None:
    status, data, content_type = await send(sim, "/hf-inference/models/facebook/mms-tts-eng",
                                            body={"inputs": "Hello there world"})
    assert status == 200 and content_type == "audio/wav"
    with wave.open(io.BytesIO(data), "rb") as clip:
        assert clip.getnframes() / clip.getframerate() == pytest.approx(0.9)
    status, data, content_type = await send(sim, "/hf-inference/models/timbrooks/instruct-pix2pix",
                                            body={"inputs": b64(PNG), "parameters": {"prompt": "p",
                                                                                      "target_size": {"width": 9,
                                                                                                      "height": 5}}},
                                            Accept="image/png")
    assert status == 200 and content_type == "image/png"
    assert Image.open(io.BytesIO(data)).size == (9, 5)
    status, data, _ = await send(sim, "/hf-inference/models/acme/text-to-audio/pipeline/text-to-audio",
                                 body={"inputs": "a drum loop"})
    assert status == 200 and data.startswith(b"RIFF")


async def test_masks_are_base64_grayscale_pngs(sim: TestClient) -> None:
    _, data, _ = await send(sim, "/hf-inference/models/facebook/mask2former-swin-large-coco-panoptic", raw=PNG)
    for segment in orjson.loads(data):
        mask = Image.open(io.BytesIO(base64.b64decode(segment["mask"])))
        assert mask.mode == "L" and mask.size == (20, 12) and 0.9 <= segment["score"] < 1


async def test_faults_apply_to_file_requests_too(sim: TestClient) -> None:
    status, data, _ = await send(sim, "/hf-inference/models/acme/vit-503x1", raw=PNG)
    assert status == 503 and "error" in orjson.loads(data)
    status, _, _ = await send(sim, "/hf-inference/models/acme/vit-503x1", raw=PNG)
    assert status == 200


@pytest.mark.parametrize(("path", "kwargs", "message"), [
    ("/hf-inference/models/google/vit-base", {"raw": b""}, "request body is empty"),
    ("/hf-inference/models/google/vit-base/pipeline/image-classification", {"body": {"inputs": "not base64!"}},
     "base64"),
    ("/hf-inference/models/google/vit-base/pipeline/image-classification", {"body": [1, 2]},
     "Failed to deserialize"),
    ("/hf-inference/models/google/vit-base", {"raw": WAV}, "an image"),
    ("/hf-inference/models/acme/m/pipeline/question-answering", {"body": {"inputs": "just text"}},
     "{question: string, context: string}"),
    ("/hf-inference/models/acme/m/pipeline/tabular-regression", {"body": {"inputs": "x"}}, "table"),
    ("/hf-inference/models/acme/m/pipeline/object-detection", {"body": {"inputs": b64(PNG),
                                                                       "parameters": {"threshold": "high"}}},
     "threshold"),
    ("/hf-inference/models/acme/m/pipeline/text-to-speech", {"raw": WAV}, "Failed to deserialize"),
])
async def test_bad_input_is_a_clear_hf_error(sim: TestClient, path: str, kwargs: dict[str, Any],
                                             message: str) -> None:
    status, data, _ = await send(sim, path, **kwargs)
    assert status == 400
    error = orjson.loads(data)
    assert set(error) == {"error"} and message in error["error"]


async def test_fast_mode_serves_file_requests_byte_for_byte() -> None:
    requests = [("/hf-inference/models/facebook/detr-resnet-50", PNG), ("/hf-inference/models/openai/whisper", WAV),
                ("/hf-inference/models/google/vit-base", png_bytes(4, 4, (0, 0, 255)))]
    answers: dict[bool, list[bytes]] = {}
    for fast in (False, True):
        app = create_simulator_app(SimConfig(fast=fast), clock=FakeClock(autojump=True))
        async with TestClient(TestServer(app)) as client:
            answers[fast] = [(await send(client, path, raw=raw))[1] for path, raw in requests * 2]
    assert answers[True] == answers[False]
    assert answers[False][0] != answers[False][2]  # and different files get different answers
