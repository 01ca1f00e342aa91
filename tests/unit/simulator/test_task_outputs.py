"""The pure parts of the new text renderers: answer spans, table cells and fill-mask candidates."""

from __future__ import annotations

from gateway.simulator.render_text import answer_spans, fill_one, pick_cell

CONTEXT = "My name is Clara and I live in Berkeley. Clara likes tea."


def test_answers_are_distinct_words_of_the_context_at_their_first_offsets() -> None:
    answers = answer_spans("m", "Who?", CONTEXT, 20)
    words = [a["answer"] for a in answers]
    assert len(words) == len(set(words)) == 11  # "Clara" once, where it first occurs
    assert all(CONTEXT[a["start"]:a["end"]] == a["answer"] for a in answers)
    assert next(a for a in answers if a["answer"] == "Clara")["start"] == 11
    assert [a["score"] for a in answers] == sorted((a["score"] for a in answers), reverse=True)
    assert answer_spans("m", "Who?", CONTEXT, 3) == answers[:3]  # top_k cuts the list, not the scores
    assert answer_spans("m", "Who?", "   ", 1) == [{"score": 0.0, "start": 0, "end": 0, "answer": ""}]


def test_the_cell_comes_from_the_row_and_column_the_query_names() -> None:
    table = {"Repository": ["Transformers", "Datasets", "Tokenizers"], "Stars": ["36542", "4512", "3934"]}
    digest = bytes([0, 0])
    assert pick_cell("How many stars does Datasets have?", table, digest) == (1, 1)
    assert pick_cell("Which repository has 3934 stars?", table, digest) == (2, 0)
    assert pick_cell("anything else", table, bytes([1, 5])) == (2, 1)  # digest picks: row 5 % 3, column 1
    assert pick_cell("q", {"a": []}, digest) is None


def test_fill_mask_candidates_replace_their_own_mask() -> None:
    text = "[MASK] is the capital of [MASK]."
    second = fill_one("m", text, "[MASK]", 1, 3, None)
    assert len(second) == 3 and all(c["sequence"] == f"[MASK] is the capital of {c['token_str']}." for c in second)
    targeted = fill_one("m", text, "[MASK]", 0, 5, ["Paris", "Rome", "Paris"])
    assert sorted(c["token_str"] for c in targeted) == ["Paris", "Rome"]  # duplicates dropped
    assert fill_one("m", text, "[MASK]", 1, 3, None) == second  # deterministic
