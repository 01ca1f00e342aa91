"""`hf-gateway serve` (uvloop, as an operator runs it) behind a real forward proxy: https through a CONNECT
tunnel with the proxy from HTTPS_PROXY, a refused tunnel for an upstream whose own `proxy:` has the wrong
password, and neither password anywhere in the answers, /metrics, /status or the process's log."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import aiohttp
import yaml

from gateway.simulator.app import create_simulator_app
from tests.support.forward_proxy import forward_proxy
from tests.support.processes import Processes, free_port, gateway_env, wait_healthy
from tests.support.serving import serving
from tests.support.tls import make_tls

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
USER, SECRET, WRONG = "alice", "serve-proxy-secret", "serve-wrong-secret"


async def test_serve_through_a_proxy_keeps_every_proxy_password_to_itself(tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    async with serving(create_simulator_app(), tls=tls.server_context()) as url, \
            forward_proxy(credentials=(USER, SECRET)) as proxy:
        upstream = {"kind": "hf", "base_url": url, "ca_file": str(tls.ca_file), "token_env": None}
        config = tmp_path / "gateway.yaml"
        config.write_text(yaml.safe_dump({
            "upstreams": {"good": upstream, "bad": {**upstream, "proxy": proxy.url_with(USER, WRONG)}},
            "models": [{"name": "via-good", "deployments": [{"upstream": "good", "model": MODEL}]},
                       {"name": "via-bad", "deployments": [{"upstream": "bad", "model": MODEL}]}],
        }), encoding="utf-8")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with Processes(tmp_path) as procs:
            child = procs.gateway("gateway", "serve", "--config", str(config), "--port", str(port),
                                  env=gateway_env({"HTTPS_PROXY": proxy.url_with(USER, SECRET)}))
            await asyncio.to_thread(wait_healthy, child, f"{base}/healthz")
            texts = []
            async with aiohttp.ClientSession() as session:
                for model, expected in (("via-good", 200), ("via-bad", 502)):
                    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
                    async with session.post(f"{base}/v1/chat/completions", json=body) as resp:
                        texts.append(await resp.text())
                        assert resp.status == expected, texts[-1]
                for path in ("/metrics", "/status"):
                    async with session.get(f"{base}{path}") as resp:
                        texts.append(await resp.text())
            procs.stop()
            log = child.log.read_text()
    assert "upstream bad cannot be reached: the proxy refused the tunnel (status 407)" in texts[1]
    assert proxy.tunnels == [url.removeprefix("https://")] and proxy.refused == 1
    assert f"upstream good is reached through the proxy http://***@127.0.0.1:{proxy.port}" in log, log
    for secret in (SECRET, WRONG):
        encoded = base64.b64encode(f"{USER}:{secret}".encode()).decode()
        for text in (*texts, log):
            assert secret not in text and encoded not in text
