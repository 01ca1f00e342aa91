"""Renderers for the text tasks beyond generation and classification: fill-mask, summarization,
translation, question answering, table question answering and the tabular tasks.

Shapes, as huggingface_hub 2.4.0 parses them (`inference/_generated/types/`):
    fill-mask                  [{score, token, token_str, sequence}] (a list per mask when there are several)
    summarization              [{summary_text}]
    translation                [{translation_text}]
    question-answering         {score, start, end, answer}; a list when `top_k` > 1
    table-question-answering   {answer, coordinates, cells, aggregator}
    tabular-classification     [label per row]   tabular-regression  [float per row]

Every value is a pure function of the model id and the input (SHA-256 digests), so the same
request always gives the same bytes. Spans (`answer`, `start`, `end`) index the request's own text.
"""

from __future__ import annotations

import math
import re
from typing import Any

from gateway.simulator.calls import SimCall
from gateway.simulator.media_inputs import invalid
from gateway.simulator.task_render import int_param, labels, text_input
from gateway.simulator.textgen import TOKEN_ID_BASE, VOCAB, digest_stream, generate
from gateway.simulator.wire import Rendered, json_body

MASK_TOKENS = ("[MASK]", "<mask>")
TABULAR_LABELS = ("0", "1")
_WORD = re.compile(r"\w[\w'-]*")


def _ranked_scores(material: bytes, n: int) -> list[float]:
    """`n` softmax scores, highest first, from digest bytes."""
    logits = [material[i % len(material)] / 40.0 for i in range(n)]
    top = max(logits, default=0.0)
    exps = [math.exp(v - top) for v in logits]
    total = sum(exps) or 1.0
    return sorted((round(e / total, 6) for e in exps), reverse=True)


def _string_list(call: SimCall, value: Any, what: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    raise invalid(call, f"`{what}` must be a string or a non-empty list of strings")


def fill_one(model: str, text: str, token: str, index: int, top_k: int, targets: list[str] | None
             ) -> list[dict[str, Any]]:
    """The candidates for the `index`-th mask of `text`, best first."""
    material = digest_stream(model, text, str(index), "fill-mask")
    if targets is not None:
        words = list(dict.fromkeys(targets))[:top_k]
    else:
        start = material[0] % len(VOCAB)
        words = [VOCAB[(start + 7 * i) % len(VOCAB)] for i in range(min(top_k, len(VOCAB)))]
    head, _, tail = _split_at(text, token, index)
    out = []
    for word, score in zip(words, _ranked_scores(material[1:], len(words)), strict=True):
        token_id = TOKEN_ID_BASE + VOCAB.index(word) if word in VOCAB else TOKEN_ID_BASE + len(VOCAB) + len(word)
        out.append({"score": score, "token": token_id, "token_str": word, "sequence": head + word + tail})
    return out


def _split_at(text: str, token: str, index: int) -> tuple[str, str, str]:
    parts = text.split(token)
    return token.join(parts[: index + 1]), token, token.join(parts[index + 1:])


def render_fill_mask(call: SimCall) -> Rendered:
    """Fill-mask: the top candidates per mask token (`top_k`, default 5; `targets` restricts them)."""
    text = text_input(call)
    params = call.params()
    token = next((t for t in MASK_TOKENS if t in text), None)
    if token is None:
        raise invalid(call, "No mask_token ([MASK] or <mask>) found on the input")
    top_k = int_param(call, params, "top_k") or 5
    targets = _string_list(call, params.get("targets"), "parameters.targets")
    results = [fill_one(call.model, text, token, i, top_k, targets) for i in range(text.count(token))]
    return json_body(results[0] if len(results) == 1 else results)


def _generate_parameters(call: SimCall, params: dict[str, Any]) -> tuple[int | None, int | None]:
    generate_parameters = params.get("generate_parameters") or {}
    if not isinstance(generate_parameters, dict):
        raise invalid(call, "`parameters.generate_parameters` must be an object")
    limit = int_param(call, generate_parameters, "max_new_tokens") or int_param(call, generate_parameters,
                                                                                  "max_length")
    return limit, int_param(call, generate_parameters, "seed")


def render_summarization(call: SimCall) -> Rendered:
    """Summarization: `[{summary_text}]`, about a third as many words as the input (1 to 30)."""
    text = text_input(call)
    limit, seed = _generate_parameters(call, call.params())
    count = limit or max(1, min(30, len(text.split()) // 3))
    summary = generate(call.model, text, min(count, call.state.config.max_tokens_cap), seed=seed).text.strip()
    return json_body([{"summary_text": summary}])


def render_translation(call: SimCall) -> Rendered:
    """Translation: `[{translation_text}]`, one word out per word in, chosen by the target language."""
    text = text_input(call)
    params = call.params()
    target = params.get("tgt_lang")
    target = target if isinstance(target, str) else ""
    words = []
    for i, word in enumerate(text.split()):
        material = digest_stream(call.model, target, word, str(i), "translate", size=1)
        words.append(VOCAB[material[0] % len(VOCAB)])
    return json_body([{"translation_text": " ".join(words)}])


def _text_pair(call: SimCall, first: str, second: str) -> tuple[str, str]:
    inputs = call.inputs()
    if not isinstance(inputs, dict) or not isinstance(inputs.get(first), str) or not isinstance(
            inputs.get(second), str):
        raise invalid(call, f"`inputs` must be {{{first}: string, {second}: string}}")
    return inputs[first], inputs[second]


def answer_spans(model: str, question: str, context: str, top_k: int) -> list[dict[str, Any]]:
    """Up to `top_k` distinct words of `context` as answers, best first, with character offsets."""
    first: dict[str, re.Match[str]] = {}
    for match in _WORD.finditer(context):
        first.setdefault(match.group(), match)  # each distinct word once, where it first occurs
    spans = list(first.values())
    if not spans:
        return [{"score": 0.0, "start": 0, "end": 0, "answer": ""}]
    material = digest_stream(model, question, context, "qa")
    # Scores are spread over every span, so an answer's score does not depend on `top_k`.
    order = sorted(range(len(spans)), key=lambda i: (-material[i % len(material)], i))[:top_k]
    scores = [round(0.3 + 0.6 * s, 6) for s in _ranked_scores(material[3:], len(spans))][:top_k]
    return [{"score": score, "start": spans[i].start(), "end": spans[i].end(), "answer": spans[i].group()}
            for i, score in zip(order, scores, strict=True)]


def render_question_answering(call: SimCall) -> Rendered:
    """Extractive QA: one answer object, or a list of them when `top_k` > 1."""
    question, context = _text_pair(call, "question", "context")
    top_k = int_param(call, call.params(), "top_k") or 1
    answers = answer_spans(call.model, question, context, max(1, top_k))
    return json_body(answers if top_k > 1 else answers[0])


def read_table(call: SimCall, table: Any) -> dict[str, list[str]]:
    """A `{column: [cells]}` table with columns of equal length, cells as strings."""
    if not isinstance(table, dict) or not table or not all(isinstance(v, list) for v in table.values()):
        raise invalid(call, "the table must be an object mapping each column name to a list of cells")
    if len({len(v) for v in table.values()}) != 1:
        raise invalid(call, "every column of the table must have the same number of cells")
    if not all(isinstance(c, (str, int, float)) and not isinstance(c, bool) for v in table.values() for c in v):
        raise invalid(call, "table cells must be strings or numbers")
    return {str(k): [str(c) for c in v] for k, v in table.items()}


def pick_cell(query: str, table: dict[str, list[str]], material: bytes) -> tuple[int, int] | None:
    """(row, column) of the answer: the row a cell of which the query mentions, in a column the query
    names (not that cell's own); digest picks stand in for whatever the query does not say."""
    columns = list(table)
    rows = len(table[columns[0]])
    if rows == 0:
        return None
    lowered = query.lower()

    def mentioned(cell: str) -> bool:
        return bool(cell) and cell.lower() in lowered

    row = next((r for r in range(rows) if any(mentioned(table[c][r]) for c in columns)), None)
    taken = {c for c in columns if row is not None and mentioned(table[c][row])}
    named = [i for i, name in enumerate(columns) if name.lower() in lowered and name not in taken]
    col = named[0] if named else material[0] % len(columns)
    return (row if row is not None else material[1] % rows), col


def render_table_question_answering(call: SimCall) -> Rendered:
    """Table QA: one cell, `{answer, coordinates, cells, aggregator: "NONE"}`."""
    inputs = call.inputs()
    if not isinstance(inputs, dict) or not isinstance(inputs.get("query"), str):
        raise invalid(call, "`inputs` must be {query: string, table: {column: [cells]}}")
    query, table = inputs["query"], read_table(call, inputs.get("table"))
    found = pick_cell(query, table, digest_stream(call.model, query, "table-qa", size=2))
    if found is None:
        return json_body({"answer": "", "coordinates": [], "cells": [], "aggregator": "NONE"})
    row, col = found
    cell = table[list(table)[col]][row]
    return json_body({"answer": cell, "coordinates": [[row, col]], "cells": [cell], "aggregator": "NONE"})


def tabular_table(call: SimCall) -> dict[str, list[str]]:
    """The table of a tabular request: root `table` (what InferenceClient sends) or `inputs.data`."""
    body = call.require_json()
    if "table" in body:
        return read_table(call, body["table"])
    inputs = body.get("inputs")
    if isinstance(inputs, dict):
        return read_table(call, inputs.get("data", inputs))
    raise invalid(call, "missing field `table` (or `inputs.data`)")


def _rows(table: dict[str, list[str]]) -> list[str]:
    columns = list(table.values())
    return ["\x00".join(column[i] for column in columns) for i in range(len(columns[0]))]


def render_tabular_classification(call: SimCall) -> Rendered:
    """Tabular classification: one label per row (`models[id].labels`, else "0"/"1")."""
    choices = labels(call, TABULAR_LABELS)
    out = []
    for row in _rows(tabular_table(call)):
        out.append(choices[digest_stream(call.model, row, "tabular", size=1)[0] % len(choices)])
    return json_body(out)


def render_tabular_regression(call: SimCall) -> Rendered:
    """Tabular regression: one number per row, in [0, 1000)."""
    out = []
    for row in _rows(tabular_table(call)):
        material = digest_stream(call.model, row, "regression", size=2)
        out.append(round((material[0] << 8 | material[1]) / 65.536, 3))
    return json_body(out)
