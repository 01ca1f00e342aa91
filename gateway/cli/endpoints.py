"""`hf-gateway endpoints`: the configured dedicated endpoints with their live state; pause, resume or scale one.

    hf-gateway endpoints [list] --config gateway.yaml
    hf-gateway endpoints resume NAME --config gateway.yaml        (NAME: the upstream's name in the config)
    hf-gateway endpoints pause NAME --config gateway.yaml
    hf-gateway endpoints scale-to-zero NAME --config gateway.yaml

Each endpoint is read from its control plane with its upstream's own token (`token_env`); an operator's
command acts whatever `resume` / `idle` say (those settings bound what the gateway does on its own).
Exit status: 0 when every call succeeded, 1 when one failed, 2 on a name that is not a configured endpoint.
The token is never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from gateway.core.config import Settings
from gateway.core.upstream_config import UpstreamConfig
from gateway.upstream.egress import Egress
from gateway.upstream.endpoints.control import Action, ControlPlaneClient, ControlPlaneError
from gateway.upstream.endpoints.engines import dialect_for
from gateway.upstream.endpoints.info import EndpointInfo

_ACTIONS: tuple[Action, ...] = ("resume", "pause", "scale-to-zero")


def add_endpoints_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """`hf-gateway endpoints [list|resume|pause|scale-to-zero]`."""
    eps = subparsers.add_parser("endpoints",
                                help="list the configured dedicated endpoints with their live state, or act on one")
    eps.add_argument("--config", help="YAML config file (env GATEWAY_CONFIG)")
    # Also accepted after the sub-command; SUPPRESS keeps a --config given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, help="YAML config file (env GATEWAY_CONFIG)")
    sub = eps.add_subparsers(dest="endpoints_command")
    sub.add_parser("list", parents=[common], help="every configured endpoint, read from its control plane")
    for action in _ACTIONS:
        one = sub.add_parser(action, parents=[common], help=f"{action} one endpoint now")
        one.add_argument("name", help="the upstream's name in the gateway config")


def endpoints_of(settings: Settings) -> dict[str, UpstreamConfig]:
    """The `kind: endpoint` upstreams, by name."""
    return {name: cfg for name, cfg in settings.upstreams.items() if cfg.kind == "endpoint"}


def cmd_endpoints(args: argparse.Namespace, settings: Settings) -> int:
    """Run `endpoints list` or an action; the exit status."""
    configured = endpoints_of(settings)
    command = args.endpoints_command or "list"
    if command == "list":
        if not configured:
            print("no `kind: endpoint` upstream in this configuration")
            return 0
        return asyncio.run(_list(configured))
    cfg = configured.get(args.name)
    if cfg is None:
        known = ", ".join(sorted(configured)) or "none"
        print(f"hf-gateway endpoints: {args.name!r} is not a configured endpoint (configured: {known})",
              file=sys.stderr)
        return 2
    return asyncio.run(_act(args.name, cfg, command))


def _client(cfg: UpstreamConfig) -> ControlPlaneClient:
    token = cfg.token.get_secret_value().strip() if cfg.token else None
    return ControlPlaneClient(cfg.control_plane_url, token, timeout=cfg.control_timeout, egress=Egress.of(cfg))


async def _list(configured: dict[str, UpstreamConfig]) -> int:
    rows = [("UPSTREAM", "ENDPOINT", "STATE", "ENGINE", "RESUME", "IDLE", "URL")]
    failed = 0
    for name, cfg in configured.items():
        client = _client(cfg)
        label = f"{cfg.namespace}/{cfg.name}"
        idle = f"{cfg.idle.action} after {cfg.idle.after:g}s" if cfg.idle else "-"
        try:
            info = await client.read(cfg.namespace or "", cfg.name or "")
        except ControlPlaneError as exc:
            failed += 1
            rows.append((name, label, f"? ({exc.reason})", "-", _yes(cfg.resume), idle, exc.message))
            continue
        finally:
            await client.close()
        rows.append((name, label, info.state, _engine(info), _yes(cfg.resume), idle, info.url or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1])
    return 1 if failed else 0


async def _act(name: str, cfg: UpstreamConfig, action: str) -> int:
    client = _client(cfg)
    label = f"{cfg.namespace}/{cfg.name}"
    try:
        info = await client.act(cfg.namespace or "", cfg.name or "", action)  # type: ignore[arg-type]
    except ControlPlaneError as exc:
        print(f"hf-gateway endpoints: {action} {label} failed ({exc.reason}): {exc.message}", file=sys.stderr)
        return 1
    finally:
        await client.close()
    if info is None:
        print(f"{name} ({label}): already running")
    else:
        print(f"{name} ({label}): {info.state}")
    return 0


def _engine(info: EndpointInfo) -> str:
    return f"{info.engine} ({dialect_for(info.engine).name})"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"
