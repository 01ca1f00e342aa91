"""`hf-gateway keys create --tenant T`: a new gateway API key, shown once, and the config snippet with its hash.

The key itself is printed on its own line (stdout) and never stored anywhere; the YAML snippet
holds only its SHA-256, ready to paste under `keys:` in the gateway config. `keys hash` turns an
existing key (read from stdin, so it stays out of shell history) into the same snippet.
"""

from __future__ import annotations

import argparse
import secrets
import sys

from pydantic import ValidationError

from gateway.core.config import KeyConfig
from gateway.http.middleware.auth import hash_key
from gateway.store.protocol import key

KEY_PREFIX = "gwk_"  # recognisable in leak scanners; the rest is 256 random bits


def new_key() -> str:
    """A fresh random gateway API key."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def add_keys_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`hf-gateway keys {create,hash}`."""
    keys = subparsers.add_parser("keys", help="make gateway API keys (stored hashed in the config)")
    sub = keys.add_subparsers(dest="keys_command", required=True)
    create = sub.add_parser("create", help="print a new key once, with the config snippet holding its hash")
    create.add_argument("--tenant", required=True, help="the tenant (team) the key belongs to")
    create.add_argument("--name", help="a label for the key (shown in logs instead of the key)")
    hashed = sub.add_parser("hash", help="the config snippet for an existing key read from stdin")
    hashed.add_argument("--tenant", required=True)
    hashed.add_argument("--name")


def snippet(digest: str, tenant: str, name: str | None, prefix: str = "gw") -> str:
    """The YAML to paste under the config's top level, and the equivalent Redis command."""
    lines = ["keys:", f"  - sha256: {digest}", f"    tenant: {tenant}"]
    if name:
        lines.append(f"    name: {name}")
    lines.append(f"# or, with ratelimit.keys_in_store: redis-cli SET '{key(prefix, 'key', digest)}' {tenant}")
    return "\n".join(lines)


def cmd_keys(args: argparse.Namespace) -> int:
    """Run `keys create` / `keys hash`; 2 on a bad tenant or name."""
    try:
        KeyConfig(sha256="0" * 64, tenant=args.tenant, name=args.name)
    except ValidationError as exc:
        print(f"hf-gateway keys: {exc.errors()[0]['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        return 2
    if args.keys_command == "create":
        secret = new_key()
        print("API key for tenant", args.tenant, "(shown only this once: hand it over, keep no copy):")
        print(f"  {secret}")
        print()
    else:
        secret = sys.stdin.readline().strip()
        if not secret:
            print("hf-gateway keys hash: no key on stdin", file=sys.stderr)
            return 2
    print("Config snippet (paste at the top level of the gateway config; merge with an existing `keys:` list):")
    print(snippet(hash_key(secret), args.tenant, args.name))
    return 0
