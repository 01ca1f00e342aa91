"""`hf-gateway`: argument parsing -> Settings -> create_app -> run. Nothing else lives here."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from gateway.cli.endpoints import add_endpoints_parser, cmd_endpoints
from gateway.cli.keys import add_keys_parser, cmd_keys
from gateway.core.config import Settings, load_settings

log = logging.getLogger("gateway")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hf-gateway", description="Gateway for Hugging Face inference")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="YAML config file (env GATEWAY_CONFIG)")
    serve.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default 8080)")
    serve.add_argument("--upstream", dest="upstream_url",
                       help="replace the HF router base URL (env GATEWAY_UPSTREAM_URL)")
    serve.add_argument("--redis-url", help="shared state in Redis (env GATEWAY_REDIS_URL)")
    serve.add_argument("--workers", type=int, help="worker processes sharing the port (SO_REUSEPORT)")
    serve.add_argument("--log-format", choices=["json", "text"])

    sim = sub.add_parser("simulate", help="run the HF/TGI/TEI/OpenAI upstream simulator")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=9000)
    sim.add_argument("--config", help="simulator YAML (faults per model)")
    sim.add_argument("--fast", action="store_true", help="precomputed answers, for benchmarks")

    demo = sub.add_parser("demo", help="the simulator on :9000 and a gateway on :8080 in front of it")
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--sim-port", type=int, default=9000)

    check = sub.add_parser("check-config", help="validate a config file and say what is wrong")
    check.add_argument("file")
    add_keys_parser(sub)
    add_endpoints_parser(sub)
    return p


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem, each naming the offending key."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def _load(config: str | None, **overrides: object) -> Settings:
    try:
        return load_settings(config, **overrides)
    except ValidationError as exc:
        sys.exit(f"hf-gateway: invalid configuration:\n{format_validation_error(exc)}")
    except (FileNotFoundError, ValueError) as exc:
        sys.exit(f"hf-gateway: {exc}")


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.file)
    except ValidationError as exc:
        print(f"{args.file}: invalid\n{format_validation_error(exc)}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError) as exc:
        print(f"{args.file}: {exc}", file=sys.stderr)
        return 1
    print(f"{args.file}: ok ({len(settings.upstreams)} upstreams, {len(settings.models)} model routes, "
          f"{len(settings.keys)} keys)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _load(args.config, host=args.host, port=args.port, upstream_url=args.upstream_url,
                     redis_url=args.redis_url, workers=args.workers, log_format=args.log_format)
    from gateway.cli.serve import serve

    serve(settings)
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from gateway.simulator.app import run_simulator

    run_simulator(args.host, args.port, args.config, fast=args.fast)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    import subprocess

    sim = subprocess.Popen([sys.executable, "-m", "gateway", "simulate", "--port", str(args.sim_port)])
    try:
        os.environ.setdefault("HF_TOKEN", "hf_demo_not_a_real_token")
        settings = _load(None, port=args.port, upstream_url=f"http://127.0.0.1:{args.sim_port}", log_format="text")
        from gateway.cli.serve import serve

        print(f"demo: simulator on :{args.sim_port}, gateway on http://127.0.0.1:{args.port}", flush=True)
        serve(settings)
    finally:
        sim.terminate()
        sim.wait(5)
    return 0


def cmd_endpoints_from_config(args: argparse.Namespace) -> int:
    return cmd_endpoints(args, _load(args.config))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handlers = {"serve": cmd_serve, "simulate": cmd_simulate, "demo": cmd_demo, "check-config": cmd_check_config}
    handlers["keys"] = cmd_keys
    handlers["endpoints"] = cmd_endpoints_from_config
    return handlers[args.command](args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
