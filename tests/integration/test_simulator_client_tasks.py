"""Every `huggingface_hub.InferenceClient` task method (2.4.0) against the simulator on a real port.

Each case (tests/support/client_tasks.py) calls the real client method with small generated inputs
(a Pillow PNG, a stdlib WAV), asserts the typed result the client returns, and checks which task the
simulator detected from the request alone (the client's URL never names the task). A few cases run
again through `AsyncInferenceClient`, which must get the very same answers.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from huggingface_hub.errors import HfHubHTTPError

from tests.support.client_tasks import ASYNC_METHODS, CASES, PNG, WAV, Case, comparable
from tests.support.live_simulator import LiveSimulator, live_simulator


@pytest.fixture
async def sim() -> AsyncIterator[LiveSimulator]:
    async with live_simulator() as live:
        yield live


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
async def test_every_task_method_parses_into_its_typed_result(sim: LiveSimulator, case: Case) -> None:
    client = sim.hf(case.model)
    out = await asyncio.to_thread(getattr(client, case.method), *case.args, **case.kwargs)
    case.check(out)
    received = sim.state.requests[-1]
    assert received.task == case.task and received.model == case.model
    again = await asyncio.to_thread(getattr(client, case.method), *case.args, **case.kwargs)
    assert comparable(again) == comparable(out)  # deterministic: the same request gives the same answer


ASYNC_CASES = [c for c in CASES if c.method in ASYNC_METHODS]


@pytest.mark.parametrize("case", ASYNC_CASES, ids=lambda c: c.id)
async def test_the_async_client_gets_the_same_answers(sim: LiveSimulator, case: Case) -> None:
    sync_out = await asyncio.to_thread(getattr(sim.hf(case.model), case.method), *case.args, **case.kwargs)
    client = sim.hf_async(case.model)
    try:
        out = await getattr(client, case.method)(*case.args, **case.kwargs)
    finally:
        await client.close()
    case.check(out)
    assert comparable(out) == comparable(sync_out)
    assert [r.task for r in sim.state.requests] == [case.task, case.task]


async def test_tabular_regression_is_refused_by_the_client_but_served_to_its_body(sim: LiveSimulator) -> None:
    client = sim.hf("scikit-learn/fish-regressor")
    # huggingface_hub 2.4.0 has no hf-inference helper for this task: it fails before sending.
    with pytest.raises(ValueError, match="tabular-regression"):
        await asyncio.to_thread(client.tabular_regression, {"length": ["23.2", "24.0"]})
    assert sim.state.requests == []
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            sim.model_url("scikit-learn/fish-regressor"), json={"parameters": {}, "table": {"length": ["23.2", "24.0"]}}
        ) as resp,
    ):
        out = await resp.json()
    assert resp.status == 200 and len(out) == 2 and all(isinstance(x, float) for x in out)
    assert sim.state.requests[-1].task == "tabular-regression"


async def test_image_text_to_text_goes_through_chat_completion(sim: LiveSimulator) -> None:
    image_url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Describe this image"},
                {"type": "image_url", "image_url": {"url": image_url}},
            ],
        }
    ]
    out = await asyncio.to_thread(
        sim.hf("meta-llama/Llama-3.2-11B-Vision-Instruct").chat_completion, messages, max_tokens=4
    )
    message = out.choices[0].message
    assert message.role == "assistant" and message.content is not None and len(message.content.split()) == 4
    sent = sim.state.requests[-1]
    assert sent.path.endswith("/Llama-3.2-11B-Vision-Instruct/v1/chat/completions")
    assert sent.json()["messages"][0]["content"][1]["image_url"]["url"] == image_url


async def test_a_file_goes_raw_without_parameters_and_as_base64_json_with_them(
    sim: LiveSimulator, tmp_path: Path
) -> None:
    client = sim.hf("google/vit-base-patch16-224")
    raw = await asyncio.to_thread(client.image_classification, PNG)
    first = sim.state.requests[-1]
    assert first.body == PNG and first.content_type is None  # bytes: the client sends no Content-Type
    path = tmp_path / "cat.png"
    path.write_bytes(PNG)
    from_path = await asyncio.to_thread(client.image_classification, path)
    second = sim.state.requests[-1]
    assert second.body == PNG and second.content_type == "image/png"  # a path: typed from its suffix
    assert comparable(from_path) == comparable(raw)
    with_params = await asyncio.to_thread(client.image_classification, PNG, top_k=2)
    sent = sim.state.requests[-1]
    assert sent.content_type == "application/json" and sent.json()["parameters"] == {"top_k": 2}
    assert comparable(with_params) == comparable(raw[:2])  # the same image, base64 or raw, gets the same answer


async def test_image_to_image_is_told_from_text_to_image_by_its_input(sim: LiveSimulator) -> None:
    client = sim.hf("stabilityai/stable-diffusion-xl-refiner-1.0")
    edited = await asyncio.to_thread(client.image_to_image, PNG, prompt="at night")
    made = await asyncio.to_thread(client.text_to_image, "at night")
    tasks = [(r.task, r.headers.get("Accept")) for r in sim.state.requests]
    assert tasks == [("image-to-image", "image/png"), ("text-to-image", "image/png")]
    assert edited.size == (20, 12) and made.size == (8, 8)


async def test_recorded_binary_bodies_are_listed_as_base64(sim: LiveSimulator) -> None:
    await asyncio.to_thread(sim.hf("openai/whisper-tiny").automatic_speech_recognition, WAV)
    async with aiohttp.ClientSession() as session, session.get(f"{sim.base}/_sim/requests") as resp:
        listed = await resp.json()
    assert listed[0]["body"] is None and listed[0]["content_type"] is None
    assert base64.b64decode(listed[0]["body_base64"]) == WAV
    assert listed[0]["task"] == "automatic-speech-recognition"


@pytest.mark.parametrize(
    ("method", "model", "args", "message"),
    [
        ("image_classification", "google/vit-base-patch16-224", (b"definitely not an image",), "an image"),
        ("automatic_speech_recognition", "openai/whisper-tiny", (PNG,), "as audio"),
        ("fill_mask", "google-bert/bert-base-uncased", ("no mask token here",), "mask_token"),
        ("visual_question_answering", "dandelin/vilt-b32-finetuned-vqa", (WAV, "What?"), "an image"),
        (
            "table_question_answering",
            "google/tapas-base-finetuned-wtq",
            ({"a": ["1", "2"], "b": ["3"]}, "q"),
            "same number",
        ),
    ],
)
async def test_bad_input_is_a_400_in_the_hf_dialect(
    sim: LiveSimulator, method: str, model: str, args: tuple[Any, ...], message: str
) -> None:
    with pytest.raises(HfHubHTTPError) as caught:
        await asyncio.to_thread(getattr(sim.hf(model), method), *args)
    response = caught.value.response
    assert response.status_code == 400
    error = json.loads(response.text)
    assert set(error) == {"error"} and message in error["error"]
