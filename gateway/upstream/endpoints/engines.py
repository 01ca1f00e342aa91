"""Which dialect a dedicated endpoint speaks, from its engine (the key of the control plane's `model.image`).

    tgi                  -> tgi      (`/`, `/generate[_stream]`, `/v1/...`)
    tei                  -> tei      (`/embed`, `/predict`, `/rerank`, `/v1/embeddings`)
    vllm, sglang,
    llamacpp             -> openai   (`{url}/v1/chat/completions`, ...): these servers speak only the OpenAI routes
    huggingface, hfserve,
    custom, anything new -> native   (the HF toolkit's `POST /` with the task's body; chat on `/v1`)

TGI has been in maintenance mode since 2025-12 and HF recommends vLLM or SGLang, so the engine is read
every time, never assumed.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.upstream.dialects import native, tei, tgi
from gateway.upstream.dialects import openai as openai_compat
from gateway.upstream.plan import Planner


@dataclass(frozen=True, slots=True)
class EngineDialect:
    """How to talk to an endpoint of one engine."""

    name: str  # "tgi", "tei", "openai", "native": shown in /status
    planner: Planner
    base_suffix: str = ""  # appended to the endpoint URL to make the planner's base URL
    names_model: bool = False  # the server checks the body's `model` (send the repository)


_TGI = EngineDialect("tgi", tgi.plan)
_TEI = EngineDialect("tei", tei.plan)
_OPENAI = EngineDialect("openai", openai_compat.plan, base_suffix="/v1", names_model=True)
_NATIVE = EngineDialect("native", native.plan)
_BY_ENGINE = {"tgi": _TGI, "tei": _TEI, "vllm": _OPENAI, "sglang": _OPENAI, "llamacpp": _OPENAI}


def dialect_for(engine: str) -> EngineDialect:
    """The dialect of an engine key (case-blind); the HF toolkit's for engines not listed."""
    return _BY_ENGINE.get(engine.lower(), _NATIVE)
