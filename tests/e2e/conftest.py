"""The e2e stack: simulator + gateway on real ports, shared by the module's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.core.config import Settings, load_settings
from tests.support.thread_stack import Stack, start_stack, stop_stack


def e2e_settings(sim_url: str) -> Settings:
    return load_settings(
        None,
        upstream_url=sim_url,
        upstreams={
            "hf": {"kind": "hf"},
            "tgi": {"kind": "tgi", "base_url": f"{sim_url}/endpoints/tgi-a"},
            "tei": {"kind": "tei", "base_url": f"{sim_url}/endpoints/tei-a"},
            "oai": {"kind": "openai", "base_url": f"{sim_url}/v1"},
        },
        models=[
            {"name": "tgi/chat", "aliases": ["chat-default"], "deployments": [{"upstream": "tgi"}]},
            {"name": "tei/embed", "deployments": [{"upstream": "tei"}]},
            {"name": "tei/classify", "task": "text-classification", "deployments": [{"upstream": "tei"}]},
            {"name": "oai/*", "deployments": [{"upstream": "oai"}]},
            {"name": "*", "deployments": [{"upstream": "hf"}]},
        ],
    )


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    s = start_stack(e2e_settings)
    yield s
    stop_stack(s)
