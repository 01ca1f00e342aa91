"""Metrics: bounded labels, every method moves its series, per-app registries, multiprocess sums, promtool."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from gateway.http.appkeys import METRICS
from gateway.observability.metrics import Metrics, mark_worker_dead, reset_multiprocess_dir, status_class
from tests.support.metrics_exercise import exercise_all, make_metrics

REPO = Path(__file__).resolve().parents[3]


def sample(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def parse(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by (name, sorted labels)."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def need_promtool() -> str:
    """promtool's path; skipped locally when missing, but a failure in CI (which installs it)."""
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing in CI (.ci/run installs Debian's prometheus package)")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return path


def promtool_check(body: bytes) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [need_promtool(), "check", "metrics"], input=body.decode(), capture_output=True, text=True, timeout=30
    )


# -- label bounding ---------------------------------------------------------------------------


def test_configured_names_keep_their_label_and_everything_else_is_other() -> None:
    m = make_metrics()
    assert m.model_label("llama") == "llama"  # an alias counts as configured
    assert m.model_label("meta-llama/Llama-3.1-8B-Instruct") == "meta-llama/Llama-3.1-8B-Instruct"
    assert m.model_label("evil/../model") == "other"
    assert m.model_label(None) == "none"
    assert m.tenant_label("acme") == "acme"
    assert m.tenant_label("mallory") == "other"
    assert m.tenant_label(None) == "anonymous"
    assert m.deployment_label("tgi-local") == "tgi-local"
    assert m.deployment_label("somewhere") == "other"


def test_a_flood_of_made_up_model_names_adds_one_series_not_thousands() -> None:
    m = make_metrics()
    for i in range(500):
        m.request_done("chat_completions", f"random-{i}", f"tenant-{i}", 404, "none", 0.001)
    body, _ = m.render()
    series = [k for k in parse(body) if k[0] == "gateway_requests_total"]
    assert series == [
        ("gateway_requests_total", (("cache", "none"), ("model", "other"), ("route", "chat_completions"),
                                    ("status_class", "4xx"), ("tenant", "other")))
    ]  # fmt: skip
    assert sample(m, "gateway_requests_total", cache="none", model="other", route="chat_completions",
                  status_class="4xx", tenant="other") == 500  # fmt: skip


@pytest.mark.parametrize(
    ("status", "expected"),
    [(200, "2xx"), (204, "2xx"), (301, "3xx"), (429, "4xx"), (503, "5xx"), (0, "5xx"), (999, "5xx")],
)
def test_status_class(status: int, expected: str) -> None:
    assert status_class(status) == expected


def test_a_label_outside_its_vocabulary_fails_loudly() -> None:
    m = make_metrics()
    with pytest.raises(ValueError, match="hits"):
        m.request_done("chat_completions", "llama", "acme", 200, "hits", 0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        m.retry("hf-router", "teapot")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        m.ratelimit_decision("galaxy", "allowed")  # type: ignore[arg-type]


# -- each method moves its series ------------------------------------------------------------


def test_request_done_counts_times_and_derives_overhead() -> None:
    m = make_metrics()
    m.request_done("chat_completions", "llama", "acme", 200, "miss", 0.8, upstream_seconds=0.7)
    m.request_done("chat_completions", "llama", "acme", 502, "miss", 0.3, upstream_seconds=0.1, waited_seconds=0.15)
    assert sample(m, "gateway_requests_total", route="chat_completions", model="llama", tenant="acme",
                  status_class="2xx", cache="miss") == 1  # fmt: skip
    assert sample(m, "gateway_requests_total", route="chat_completions", model="llama", tenant="acme",
                  status_class="5xx", cache="miss") == 1  # fmt: skip
    assert sample(m, "gateway_request_duration_seconds_count", route="chat_completions", model="llama") == 2
    total = sample(m, "gateway_request_duration_seconds_sum", route="chat_completions", model="llama")
    assert total == pytest.approx(1.1)
    # overhead = total - upstream - deliberate waits: 0.1 + 0.05
    assert sample(m, "gateway_overhead_seconds_sum", route="chat_completions") == pytest.approx(0.15)
    assert sample(m, "gateway_overhead_seconds_bucket", route="chat_completions", le="0.025") == 0
    assert sample(m, "gateway_overhead_seconds_bucket", route="chat_completions", le="+Inf") == 2


def test_overhead_never_goes_negative() -> None:
    m = make_metrics()
    m.request_done("chat_completions", "llama", "acme", 200, "miss", 0.5, upstream_seconds=0.6)
    assert sample(m, "gateway_overhead_seconds_sum", route="chat_completions") == 0
    assert sample(m, "gateway_overhead_seconds_count", route="chat_completions") == 1


def test_every_method_moves_its_series() -> None:
    m = make_metrics()
    exercise_all(m)
    expected = {
        ("gateway_stream_ttfb_seconds_count", (("model", "llama"), ("route", "chat_completions"))): 1,
        ("gateway_upstream_duration_seconds_count", (("deployment", "hf-router"),)): 1,
        ("gateway_tokens_total", (("direction", "in"), ("model", "llama"), ("tenant", "acme"))): 12,
        ("gateway_tokens_total", (("direction", "out"), ("model", "llama"), ("tenant", "acme"))): 34,
        ("gateway_retries_total", (("deployment", "hf-router"), ("reason", "429"))): 1,
        ("gateway_fallbacks_total", (("model", "llama"),)): 1,
        ("gateway_coldstart_waits_total", (("model", "llama"),)): 1,
        ("gateway_coldstart_wait_seconds_total", (("model", "llama"),)): 30,
        ("gateway_models_loading", ()): 1,
        ("gateway_ratelimit_decisions_total", (("outcome", "limited"), ("scope", "tenant"))): 1,
        ("gateway_outbound_queue_wait_seconds_count", (("deployment", "tgi-local"),)): 1,
        ("gateway_outbound_queue_depth", (("deployment", "tgi-local"),)): 2,
        ("gateway_cache_events_total", (("outcome", "hit"),)): 1,
        ("gateway_cache_events_total", (("outcome", "store"),)): 0,  # pre-created at zero
        ("gateway_cache_bytes_total", (("direction", "served"),)): 512,
        ("gateway_circuit_state", (("deployment", "tgi-local"),)): 1,
        ("gateway_in_flight_requests", ()): 1,
        ("gateway_redis_duration_seconds_count", (("op", "ratelimit"),)): 1,
        ("gateway_redis_errors_total", (("op", "cache_get"),)): 1,
        ("gateway_upstream_connections", (("deployment", "hf-router"), ("state", "active"))): 3,
        ("gateway_upstream_connections", (("deployment", "hf-router"), ("state", "idle"))): 5,
        ("gateway_info", (("version", "0.0.0-test"),)): 1,
    }
    got = parse(m.render()[0])
    assert {k: got.get(k) for k in expected} == expected


def test_gauges_go_down_as_well_as_up() -> None:
    m = make_metrics()
    m.add_in_flight(1)
    m.add_in_flight(1)
    m.add_in_flight(-1)
    m.add_models_loading(2)
    m.set_models_loading(0)
    m.add_outbound_queue_depth("tgi-local", 1)
    m.add_outbound_queue_depth("tgi-local", -1)
    m.set_circuit_state("hf-router", "open")
    assert sample(m, "gateway_in_flight_requests") == 1
    assert sample(m, "gateway_models_loading") == 0
    assert sample(m, "gateway_outbound_queue_depth", deployment="tgi-local") == 0
    assert sample(m, "gateway_circuit_state", deployment="hf-router") == 2


def test_pool_probes_run_on_scrape_only_and_a_broken_probe_spares_the_rest() -> None:
    m = make_metrics()
    calls: list[int] = []

    def probe() -> tuple[int, int]:
        calls.append(1)
        return (len(calls), 4)

    def broken() -> tuple[int, int]:
        raise RuntimeError("pool gone")

    m.register_pool_probe("hf-router", probe)
    m.register_pool_probe("tgi-local", broken)
    m.request_done("chat_completions", "llama", "acme", 200, "miss", 0.1)
    assert calls == []
    first, second = parse(m.render()[0]), parse(m.render()[0])
    key = ("gateway_upstream_connections", (("deployment", "hf-router"), ("state", "active")))
    assert (first[key], second[key]) == (1, 2)
    assert not any(k[0] == "gateway_upstream_connections" and ("deployment", "tgi-local") in k[1] for k in second)


# -- registries -------------------------------------------------------------------------------


def test_each_app_has_its_own_registry_and_the_global_one_stays_clean() -> None:
    a, b = make_metrics(), make_metrics()
    a.request_done("chat_completions", "llama", "acme", 200, "miss", 0.1)
    labels = dict(route="chat_completions", model="llama", tenant="acme", status_class="2xx", cache="miss")
    assert sample(a, "gateway_requests_total", **labels) == 1
    assert sample(b, "gateway_requests_total", **labels) is None
    assert REGISTRY.get_sample_value("gateway_requests_total", labels) is None


def test_render_is_prometheus_text_and_the_app_key_reaches_it() -> None:
    app = web.Application()
    app[METRICS] = make_metrics()
    body, content_type = app[METRICS].render()
    assert content_type.startswith("text/plain; version=0.0.4")
    assert b"# TYPE gateway_requests_total counter" in body


def test_promtool_finds_nothing_to_complain_about() -> None:
    m = make_metrics()
    exercise_all(m)
    result = promtool_check(m.render()[0])
    assert result.returncode == 0 and result.stdout == "" and result.stderr == "", result


# -- multiprocess -------------------------------------------------------------------------------

# The library picks its value class at import, from the environment, so every "worker" is a
# fresh interpreter started with PROMETHEUS_MULTIPROC_DIR set, as the CLI starts its workers.
WORKER = """
import json, os, sys
from gateway.observability.metrics import Metrics
m = Metrics(
    models=["llama"], tenants=["acme"], deployments=["hf-router"], multiprocess_dir=sys.argv[1], version="mp-test"
)
n = int(sys.argv[2])
for _ in range(n):
    m.request_done("chat_completions", "llama", "acme", 200, "miss", 0.5, upstream_seconds=0.4)
m.tokens("llama", "acme", 10 * n, 0)
m.add_in_flight(n)
m.set_circuit_state("hf-router", "open" if n == 3 else "closed")
m.register_pool_probe("hf-router", lambda: (n, 1))
m.refresh_pools()
print(json.dumps({"pid": os.getpid()}))
"""
RENDER = """
import sys
from gateway.observability.metrics import Metrics
sys.stdout.write(Metrics(multiprocess_dir=sys.argv[1], version="mp-test").render()[0].decode())
"""


def run_py(code: str, *args: str, mp_dir: Path) -> str:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(mp_dir), "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", code, str(mp_dir), *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_two_workers_add_up_in_one_scrape(tmp_path: Path) -> None:
    mp_dir = tmp_path / "prom"
    reset_multiprocess_dir(str(mp_dir))
    pid_a = json.loads(run_py(WORKER, "3", mp_dir=mp_dir))["pid"]
    json.loads(run_py(WORKER, "4", mp_dir=mp_dir))
    body = run_py(RENDER, mp_dir=mp_dir).encode()
    got = parse(body)
    labels = (
        ("cache", "miss"), ("model", "llama"), ("route", "chat_completions"), ("status_class", "2xx"),
        ("tenant", "acme"),
    )  # fmt: skip
    assert got[("gateway_requests_total", labels)] == 7
    assert got[("gateway_request_duration_seconds_count", (("model", "llama"), ("route", "chat_completions")))] == 7
    assert got[("gateway_tokens_total", (("direction", "in"), ("model", "llama"), ("tenant", "acme")))] == 70
    assert got[("gateway_in_flight_requests", ())] == 7  # livesum
    assert got[("gateway_circuit_state", (("deployment", "hf-router"),))] == 2  # livemax: the worst worker
    assert got[("gateway_upstream_connections", (("deployment", "hf-router"), ("state", "active")))] == 7
    assert got[("gateway_info", (("version", "mp-test"),))] == 1
    if shutil.which("promtool") or os.environ.get("CI") == "true":
        result = promtool_check(body)
        assert result.returncode == 0 and result.stdout == "" and result.stderr == "", result

    # A dead worker's live gauges leave the sums; its counters stay (they happened).
    mark_worker_dead(pid_a, str(mp_dir))
    got = parse(run_py(RENDER, mp_dir=mp_dir).encode())
    assert got[("gateway_in_flight_requests", ())] == 4
    assert got[("gateway_circuit_state", (("deployment", "hf-router"),))] == 0
    assert got[("gateway_requests_total", labels)] == 7


# The server's way: the supervisor imported everything (prometheus_client included) before it
# knows it will fork, then switches to shared values and forks; workers record, one renders.
FORKING_SUPERVISOR = """
import os, sys
from gateway.observability.metrics import Metrics, enable_multiprocess
path = sys.argv[1]
enable_multiprocess(path)
children = []
for n in (2, 5):
    pid = os.fork()
    if pid == 0:
        m = Metrics(models=["llama"], multiprocess_dir=path, version="fork-test")
        for _ in range(n):
            m.request_done("chat_completions", "llama", None, 200, "hit", 0.01)
        m.add_in_flight(1)
        os._exit(0)
    children.append(pid)
for pid in children:
    assert os.waitpid(pid, 0)[1] == 0
sys.stdout.write(Metrics(multiprocess_dir=path, version="fork-test").render()[0].decode())
"""


def test_forked_workers_add_up_after_enable_multiprocess(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"} | {"PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", FORKING_SUPERVISOR, str(tmp_path / "prom")], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    got = parse(done.stdout.encode())
    labels = (
        ("cache", "hit"), ("model", "llama"), ("route", "chat_completions"), ("status_class", "2xx"),
        ("tenant", "anonymous"),
    )  # fmt: skip
    assert got[("gateway_requests_total", labels)] == 7
    assert got[("gateway_in_flight_requests", ())] == 2


def test_multiprocess_mode_refuses_to_start_without_the_environment(tmp_path: Path) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        pytest.skip("this interpreter was started in multiprocess mode")
    with pytest.raises(RuntimeError, match="PROMETHEUS_MULTIPROC_DIR"):
        Metrics(multiprocess_dir=str(tmp_path))


def test_reset_multiprocess_dir_empties_stale_files(tmp_path: Path) -> None:
    mp_dir = tmp_path / "prom"
    mp_dir.mkdir()
    (mp_dir / "counter_123.db").write_bytes(b"stale")
    reset_multiprocess_dir(str(mp_dir))
    assert mp_dir.is_dir() and list(mp_dir.iterdir()) == []
