"""Calls every recording method of `Metrics` once, so a render shows every family with samples.

Shared by the metric, promtool and dashboard tests (a catalogue entry no test can see is a
panel that silently shows nothing).
"""

from __future__ import annotations

from gateway.observability.metrics import Metrics

MODELS = ("meta-llama/Llama-3.1-8B-Instruct", "llama")
TENANTS = ("acme",)
DEPLOYMENTS = ("hf-router", "tgi-local")
ENDPOINTS = ("dedicated",)


def make_metrics() -> Metrics:
    """A Metrics with a small configured world (models with an alias, one tenant, two deployments)."""
    return Metrics(models=MODELS, tenants=TENANTS, deployments=DEPLOYMENTS, version="0.0.0-test", endpoints=ENDPOINTS)


def exercise_all(m: Metrics) -> None:
    """One call of every recording method, with plausible values."""
    m.add_in_flight(1)
    m.request_done("chat_completions", "llama", "acme", 200, "miss", 0.8, upstream_seconds=0.7)
    m.request_done("chat_completions", "llama", "acme", 200, "hit", 0.002)
    m.request_done("chat_completions", "unknown-model", None, 429, "none", 0.001)
    m.request_done("text_generation", "llama", "acme", 503, "bypass", 31.0, 1.0, waited_seconds=30.0)
    m.stream_first_byte("chat_completions", "llama", 0.12)
    m.upstream_done("hf-router", 0.7)
    m.tokens("llama", "acme", 12, 34)
    m.retry("hf-router", "429")
    m.fallback("llama")
    m.coldstart_wait("llama", 30.0)
    m.add_models_loading(1)
    m.ratelimit_decision("tenant", "limited")
    m.outbound_queue_wait("tgi-local", 0.05)
    m.add_outbound_queue_depth("tgi-local", 2)
    m.cache_event("hit")
    m.cache_bytes("served", 512)
    m.set_circuit_state("tgi-local", "half_open")
    m.redis_op("ratelimit", 0.0004)
    m.malformed_request("framing")
    m.redis_op("cache_get", 0.2, ok=False)
    m.register_pool_probe("hf-router", lambda: (3, 5))
    m.set_endpoint_state("dedicated", "scaledToZero")
    m.endpoint_wakeup("dedicated")
    m.endpoint_ready("dedicated", 95.0)
    m.endpoint_fallback_served("dedicated")
    m.endpoint_idle_action("dedicated", "pause")
    m.endpoint_control_error("dedicated", "unreachable")
