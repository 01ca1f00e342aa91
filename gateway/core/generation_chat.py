"""HF text generation carried over an OpenAI chat route, and back into the TGI shapes InferenceClient reads.

Today's HF router serves LLMs through providers that are reached on `/v1/chat/completions` only
(docs/hf-router.md). An `InferenceClient.text_generation` call for such a model is sent there as
one user message, and the answer is rewritten into what the client parses: `[{"generated_text"}]`
(a bare object for TGI's `/generate`), or TGI token events for a stream.

What cannot survive the trip (docs/hf-router.md, 'Text generation through the chat route'):
- the raw prompt: the provider applies the model's chat template, so the prompt is read as an
  instruction, not continued;
- parameters without a chat equivalent (`top_k`, `repetition_penalty`, `typical_p`, `truncate`,
  `watermark`, `best_of`, `decoder_input_details`, `top_n_tokens`, `adapter_id`) are dropped, and
  a regex `grammar` is refused;
- `details`: `finish_reason`, `generated_tokens` and `seed` are kept; token ids, logprobs and the
  prefill are not (`tokens` and `prefill` are empty lists; a stream's token ids are 0).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from gateway.core.errors import BadRequest, UpstreamProtocolError
from gateway.core.sse import DONE, event_data, tgi_error_event

# Chat's finish reasons as TGI names them (`stop` covers both an end-of-sequence and a stop word).
_FINISH = {"stop": "eos_token", "length": "length"}
_SAME = ("temperature", "top_p", "seed", "frequency_penalty")
DROPPED = ("top_k", "repetition_penalty", "typical_p", "truncate", "watermark", "best_of",
           "decoder_input_details", "top_n_tokens", "adapter_id")


def generation_params(body: dict[str, Any] | None) -> dict[str, Any]:
    """The `parameters` object of an HF text-generation body ({} when absent)."""
    params = body.get("parameters") if isinstance(body, dict) else None
    return params if isinstance(params, dict) else {}


def chat_request(body: dict[str, Any] | None, model: str, stream: bool) -> dict[str, Any]:
    """The chat completion request for an HF text-generation body; BadRequest for what chat cannot express."""
    prompt = body.get("inputs") if isinstance(body, dict) else None
    if not isinstance(prompt, str):
        raise BadRequest("text generation through a chat route takes one prompt: `inputs` must be a string")
    params = generation_params(body)
    out: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": prompt}]}
    if params.get("max_new_tokens") is not None:
        out["max_tokens"] = params["max_new_tokens"]
    out.update({k: params[k] for k in _SAME if params.get(k) is not None})
    if params.get("do_sample") is False and "temperature" not in out:
        out["temperature"] = 0  # greedy decoding
    if params.get("stop"):
        out["stop"] = params["stop"]
    grammar = params.get("grammar")
    if grammar is not None:
        out["response_format"] = _response_format(grammar)
    out["stream"] = stream
    if stream and params.get("details"):
        out["stream_options"] = {"include_usage": True}  # generated_tokens and input_length come from it
    return out


def _response_format(grammar: Any) -> dict[str, Any]:
    kind = grammar.get("type") if isinstance(grammar, dict) else None
    if kind not in ("json", "json_object", "json_schema"):
        raise BadRequest(f"a {kind or 'malformed'!s} `grammar` cannot be sent through a chat route (only a JSON "
                         "schema can); route this model to a TGI upstream to use it")
    schema = grammar.get("value")
    if isinstance(schema, str):
        try:
            schema = orjson.loads(schema)
        except orjson.JSONDecodeError as exc:
            raise BadRequest("`grammar.value` is not a JSON schema") from exc
    return {"type": "json_schema", "json_schema": {"name": "grammar", "schema": schema}}


def tgi_answer(body: dict[str, Any] | None, as_list: bool) -> Callable[[Any], Any]:
    """Rewrites a `chat.completion` object into TGI's answer: `[{generated_text, details?}]` or the bare object."""
    prompt = body.get("inputs") if isinstance(body, dict) else ""
    params = generation_params(body)

    def convert(data: Any) -> Any:
        try:
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise UpstreamProtocolError("the chat route answered something that is not a chat completion") from exc
        out: dict[str, Any] = {"generated_text": f"{prompt}{text}" if params.get("return_full_text") else text}
        if params.get("details"):
            usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
            out["details"] = {
                "finish_reason": _finish(choice.get("finish_reason")),
                "generated_tokens": int(usage.get("completion_tokens") or 0),
                "seed": params.get("seed"), "prefill": [], "tokens": [],
            }  # fmt: skip
        return [out] if as_list else out

    return convert


def _finish(reason: Any) -> Any:
    return _FINISH.get(reason, reason) if isinstance(reason, str) else "eos_token"


class TgiEvents:
    """Chat completion chunks in, TGI token events out: each chunk's content is one token.

    A token event is held back until the next one arrives, because TGI puts `generated_text` (and
    `details`) on the last token's event and chat only says which was last afterwards.
    """

    def __init__(self, body: dict[str, Any] | None) -> None:
        self._prompt = body.get("inputs") if isinstance(body, dict) else ""
        self._params = generation_params(body)
        self._held: dict[str, Any] | None = None
        self._parts: list[str] = []
        self._finish: Any = None
        self._usage: dict[str, Any] = {}
        self.error: dict[str, Any] | None = None  # the chat stream's in-band error event, once one came

    def feed(self, event: bytes) -> list[bytes]:
        """The TGI events one chat event becomes (comments pass as they are)."""
        data = event_data(event)
        if data is None:
            return [event]
        if event == DONE or data.strip() == b"[DONE]":
            return []
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise UpstreamProtocolError("the chat route sent a stream event that is not JSON") from exc
        if not isinstance(chunk, dict):
            return []
        if chunk.get("error"):
            self.error = chunk
            return [tgi_error_event(_error_message(chunk["error"]))]
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        out: list[bytes] = []
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict) and delta.get("content"):
                out.extend(self._token(str(delta["content"])))
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
        return out

    def end(self) -> list[bytes]:
        """The last token event, with `generated_text` (and `details`); nothing after an error."""
        if self.error is not None:
            return []
        last = self._held or _token_event(len(self._parts), "")
        text = "".join(self._parts)
        last["generated_text"] = f"{self._prompt}{text}" if self._params.get("return_full_text") else text
        if self._params.get("details"):
            last["details"] = {
                "finish_reason": _finish(self._finish),
                "generated_tokens": int(self._usage.get("completion_tokens") or len(self._parts)),
                "input_length": int(self._usage.get("prompt_tokens") or 0),
                "seed": self._params.get("seed"),
            }  # fmt: skip
        self._held = None
        return [_encode(last)]

    def _token(self, text: str) -> list[bytes]:
        held, self._held = self._held, _token_event(len(self._parts), text)
        self._parts.append(text)
        return [_encode(held)] if held is not None else []


def _token_event(index: int, text: str) -> dict[str, Any]:
    token = {"id": 0, "text": text, "logprob": 0.0, "special": False}
    return {"index": index, "token": token, "generated_text": None, "details": None}


def _encode(event: dict[str, Any]) -> bytes:
    return b"data:" + orjson.dumps(event) + b"\n\n"  # TGI writes no space after `data:`


def _error_message(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)
