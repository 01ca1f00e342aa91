"""HF text generation on an `hf` upstream: hf-inference, or the router's chat route (docs/hf-router.md).

Which one: the route's `text_generation` (`hf-inference`, `chat`, or `auto`); under `auto`, the
chat route when the client named another provider or a policy (`org/name:novita`, `:fastest`),
the only route on which the router honours that choice for an LLM. The conversion both ways is
`core/generation_chat.py`; this module plans the request and turns the chat stream into TGI's.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from functools import partial
from typing import Any

from gateway.core import tasks
from gateway.core.call import Call, Op, StreamReply
from gateway.core.errors import BadRequest, UpstreamError, UpstreamStatusError
from gateway.core.generation_chat import TgiEvents, chat_request, tgi_answer
from gateway.core.model_ids import other_provider, split_provider
from gateway.upstream.dialects.bodies import dump
from gateway.upstream.plan import Plan, SseStyle
from gateway.upstream.status_errors import stream_error


def via_chat(call: Call, model: str) -> bool:
    """Whether this HF task or TGI `/generate` call is text generation that goes to the chat route."""
    mode = call.route.config.text_generation
    _, suffix = split_provider(model)
    foreign = other_provider(suffix)
    if call.op is Op.HF_TASK and call.task != tasks.TEXT_GENERATION:
        # An undetected task is taken for text generation only where nothing else could be meant.
        if call.task is not None or not (mode == "chat" or foreign) or not tasks.text_inputs(call.body):
            return False
    if mode == "hf-inference":
        if foreign:
            raise BadRequest(f"model {model[:80]!r} names the provider or policy {suffix!r}, but its route sends text "
                             "generation to hf-inference (`text_generation: hf-inference`); drop the suffix, or "
                             "set `text_generation: chat` on the route")
        return False
    return mode == "chat" or foreign


def generation_plan(call: Call, model: str, base_url: str) -> Plan:
    """Text generation as a chat completion on `{base}/v1/chat/completions`, answered in TGI's shapes."""
    body = dump(chat_request(call.body, model, call.stream))
    url = f"{base_url}/v1/chat/completions"
    as_list = call.op is Op.HF_TASK  # the HF task answers a list; TGI's `/generate` a bare object
    if call.stream:
        return Plan(url, body, stream=True, sse=SseStyle.OPENAI, reshape=partial(as_tgi_stream, body=call.body))
    return Plan(url, body, adapt=tgi_answer(call.body, as_list))


def explain_not_served(model: str, certain: bool = True) -> Callable[[UpstreamError], UpstreamError]:
    """For a 404 from hf-inference on text generation: the model is not served there; say how to route it.

    `certain`: the call is known to be text generation (else it is a text body whose task nothing told).
    """
    name, _ = split_provider(model)
    lead = "hf-inference does not serve" if certain else "if this is text generation: hf-inference does not serve"

    def explain(err: UpstreamError) -> UpstreamError:
        if isinstance(err, UpstreamStatusError) and err.status == 404:
            err.message = (f"{err.message} ({lead} text generation for {name!r}: set `text_generation: chat` on "
                           f"its route in the gateway config, or call it as '{name}:fastest' or "
                           f"'{name}:<provider>', to send it to the router's chat route)")
            err.args = (err.message,)
        return err

    return explain


async def as_tgi_stream(reply: StreamReply, body: dict[str, Any] | None) -> StreamReply:
    """The chat stream `reply` as a TGI token stream, its first token event read before returning.

    A chat stream may open with an event that carries no token (a role-only delta), so the chat
    stream's first event is not enough: the 200 is committed only on the first token, and an
    error before it is an ordinary HTTP error.
    """
    convert = TgiEvents(body)
    events = _converted(reply.events(), convert)
    first = b""
    try:
        async for ev in events:
            if convert.error is not None:
                raise stream_error(convert.error)
            first += ev
            if ev.startswith(b"data:"):
                break
    except BaseException:
        await events.aclose()
        raise
    return StreamReply(first=first, rest=events, headers=reply.headers, status=reply.status,
                       content_type=reply.content_type, on_close=reply.on_close)


async def _converted(source: AsyncIterator[bytes], convert: TgiEvents) -> AsyncGenerator[bytes, None]:
    try:
        async for event in source:
            for out in convert.feed(event):
                yield out
        for out in convert.end():
            yield out
    finally:
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()
