"""`FaultBook`: script precedence, counted faults, cold and rate windows on a fake clock."""

from __future__ import annotations

from gateway.core.clock import FakeClock
from gateway.simulator.config import FaultSpec
from gateway.simulator.fault_spec import parse_fault_names
from gateway.simulator.faults import Ask, FaultBook

TOKEN = "hf_fake_test_token"


def _book(
    configured: dict[str, list[FaultSpec]] | None = None, token: str | None = None
) -> tuple[FaultBook, FakeClock]:
    clock = FakeClock()
    return FaultBook(configured or {}, token, clock), clock


def _statuses(book: FaultBook, key: str, n: int, ask: Ask | None = None) -> list[int]:
    ask = ask or Ask()
    out = []
    for _ in range(n):
        gate = book.plan(key, ask).gate
        out.append(gate.status if gate else 200)
    return out


def test_counted_status_faults_run_in_sequence_then_succeed() -> None:
    book, _ = _book()
    assert _statuses(book, "m-503x2+500x1", 5) == [503, 503, 500, 200, 200]


def test_status_fault_carries_retry_after_headers() -> None:
    book, _ = _book()
    gate = book.plan("m-429x1-ra2", Ask()).gate
    assert gate is not None and gate.retry_after == 2.0 and gate.retry_after_ms is None
    gate = book.plan("m-429x1-ra250ms", Ask()).gate
    assert gate is not None and gate.retry_after_ms == 250 and gate.retry_after is None


def test_cold_window_opens_at_first_request_and_reports_remaining_time() -> None:
    book, clock = _book()
    clock.advance(100)  # time before the first request does not count
    first = book.plan("sim/cold-20s", Ask()).gate
    assert first is not None and first.kind == "cold" and first.estimated_time == 20.0
    clock.advance(15)
    later = book.plan("sim/cold-20s", Ask()).gate
    assert later is not None and later.estimated_time == 5.0
    assert book.loading("sim/cold-20s")
    clock.advance(5)
    assert book.plan("sim/cold-20s", Ask()).gate is None
    assert not book.loading("sim/cold-20s")


def test_cold_with_wait_for_model_becomes_a_wait() -> None:
    book, clock = _book()
    plan = book.plan("m-cold-20s", Ask(wait_for_model=True))
    assert plan.gate is None and plan.wait == 20.0
    clock.advance(8)
    assert book.plan("m-cold-20s", Ask(wait_for_model=True)).wait == 12.0


def test_rate_limit_counts_every_arrival_in_a_sliding_window() -> None:
    book, clock = _book()
    assert _statuses(book, "m-limit-3ps", 4) == [200, 200, 200, 429]
    gate = book.plan("m-limit-3ps", Ask()).gate
    assert gate is not None and gate.retry_after == 1.0
    clock.advance(1.01)
    assert _statuses(book, "m-limit-3ps", 4) == [200, 200, 200, 429]


def test_auth_checks_the_configured_token_first() -> None:
    book, _ = _book(token=TOKEN)
    key = "m-503x1+auth"
    assert _statuses(book, key, 1, Ask()) == [401]
    assert _statuses(book, key, 1, Ask(authorization="Bearer wrong")) == [401]
    # A rejected request does not consume the 503 that follows auth in the script.
    assert _statuses(book, key, 2, Ask(authorization=f"bearer {TOKEN}")) == [503, 200]
    assert book.denies(key, None) and not book.denies(key, f"Bearer {TOKEN}")


def test_auth_without_configured_token_accepts_any_bearer() -> None:
    book, _ = _book()
    assert _statuses(book, "auth", 2, Ask(authorization="Bearer anything")) == [200, 200]
    assert _statuses(book, "auth", 1, Ask(authorization="Basic abc")) == [401]


def test_stream_only_faults_skip_and_do_not_consume_on_plain_requests() -> None:
    book, _ = _book()
    key = "m-midstream-k2-x1+drip-10ms"
    plain = book.plan(key, Ask(stream=False))
    assert plain.midstream_after is None and plain.drip == 0.0 and plain.clean
    streamed = book.plan(key, Ask(stream=True))
    assert streamed.midstream_after == 2 and streamed.drip == 0.01
    again = book.plan(key, Ask(stream=True))
    assert again.midstream_after is None and again.drip == 0.01


def test_modifiers_collect_into_one_plan() -> None:
    book, _ = _book()
    plan = book.plan("m-slow-ttfb-1s+garbage+wrong-content-type+huge-body-1kb+truncated-json", Ask())
    assert (plan.slow_ttfb, plan.garbage, plan.wrong_content_type, plan.huge_body, plan.truncated_json) == (
        1.0,
        True,
        True,
        1024,
        True,
    )


def test_precedence_runtime_over_config_over_name_and_reset() -> None:
    configured = {"sim/cold-20s": [FaultSpec(kind="status", status=502, times=1)]}
    book, _ = _book(configured)
    assert _statuses(book, "sim/cold-20s", 2) == [502, 200]
    book.set("sim/cold-20s", parse_fault_names("504x1"))
    assert _statuses(book, "sim/cold-20s", 2) == [504, 200]
    book.set("sim/cold-20s", [])
    assert _statuses(book, "sim/cold-20s", 1) == [200]
    book.reset()  # forgets the run-time script and the progress of the configured one
    assert _statuses(book, "sim/cold-20s", 2) == [502, 200]


def test_reset_before_is_a_counted_gate() -> None:
    book, _ = _book()
    gates = [book.plan("reset-before-x1", Ask()).gate for _ in range(2)]
    assert gates[0] is not None and gates[0].kind == "reset-before" and gates[1] is None
