"""The control plane's endpoint object, parsed as huggingface_hub 2.4.0 reads it; the engine picks the dialect."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.upstream.endpoints.engines import dialect_for
from gateway.upstream.endpoints.info import parse_endpoint

# The shape of huggingface_hub's recorded answers (tests/test_inference_endpoints.py), trimmed.
RUNNING: dict[str, Any] = {
    "name": "my-endpoint-name", "type": "protected", "accountId": None, "healthRoute": "/health",
    "provider": {"vendor": "aws", "region": "us-east-1"},
    "compute": {"accelerator": "cpu", "instanceType": "intel-icl", "instanceSize": "x2",
                "scaling": {"minReplica": 0, "maxReplica": 1}},
    "model": {"repository": "gpt2", "revision": "11c5a3d", "task": "text-generation", "framework": "pytorch",
              "image": {"huggingface": {}}},
    "status": {"createdAt": "2023-10-26T12:41:53.263Z", "updatedAt": "2023-10-26T12:41:53.263Z",
               "state": "running", "message": "Endpoint is ready",
               "url": "https://vksrvs8pc1xnifhq.us-east-1.aws.endpoints.huggingface.cloud/",
               "readyReplica": 1, "targetReplica": 1},
}


def test_a_running_endpoint() -> None:
    info = parse_endpoint(RUNNING)
    assert info.state == "running" and info.url == "https://vksrvs8pc1xnifhq.us-east-1.aws.endpoints.huggingface.cloud"
    assert (info.engine, info.repository, info.task, info.health_route) == ("huggingface", "gpt2", "text-generation",
                                                                            "/health")


def test_a_paused_endpoint_has_no_url() -> None:
    paused = {**RUNNING, "status": {**RUNNING["status"], "state": "paused"}}
    del paused["status"]["url"]
    assert parse_endpoint(paused).url is None


@pytest.mark.parametrize("image, dialect, suffix", [
    ({"tgi": {"url": "ghcr.io/huggingface/text-generation-inference:3.3.6"}}, "tgi", ""),
    ({"tei": {}}, "tei", ""), ({"vLLM": {}}, "openai", "/v1"), ({"sGLang": {}}, "openai", "/v1"),
    ({"llamacpp": {}}, "openai", "/v1"), ({"huggingface": {}}, "native", ""), ({"custom": {}}, "native", ""),
    ({"somethingNew": {}}, "native", ""),
])
def test_the_engine_names_the_dialect(image: dict[str, Any], dialect: str, suffix: str) -> None:
    info = parse_endpoint({**RUNNING, "model": {**RUNNING["model"], "image": image}})
    chosen = dialect_for(info.engine)
    assert (chosen.name, chosen.base_suffix) == (dialect, suffix)


@pytest.mark.parametrize("garbage", [
    None, [], "running", {"status": {"state": "running"}}, {**RUNNING, "status": {"state": "sleepy"}},
    {**RUNNING, "status": {"state": "running", "url": "ftp://x"}}, {**RUNNING, "model": "gpt2"},
])
def test_garbage_is_refused(garbage: Any) -> None:
    with pytest.raises(ValueError):
        parse_endpoint(garbage)
