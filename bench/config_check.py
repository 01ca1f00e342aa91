"""The bench's gateway configs, made valid for the gateway version at hand.

`effective_config` asks `hf-gateway check-config` about a YAML file; while it is refused, the
options it names are removed (the deepest part of the named path that exists in the file) and the
check runs again. What was dropped is returned, so the results say which policies were really on.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from .procs import BenchError

CONFIG_DIR = Path(__file__).parent / "configs"
_LOC_LINE = re.compile(r"^\s+(\S.*?):\s+(.*)$")


def check(path: Path, env: dict[str, str] | None = None) -> tuple[bool, str]:
    out = subprocess.run([sys.executable, "-m", "gateway", "check-config", str(path)],
                         capture_output=True, text=True, env=env, timeout=120)
    return out.returncode == 0, (out.stdout + out.stderr).strip()


def effective_config(source: Path, out: Path, env: dict[str, str] | None = None,
                     overrides: dict[str, Any] | None = None) -> tuple[Path, list[str]]:
    """A copy of `source` (plus `overrides`) that check-config accepts, and the list of dropped options."""
    data: dict[str, Any] = yaml.safe_load(source.read_text()) or {}
    data.update(overrides or {})
    dropped: list[str] = []
    for _ in range(25):  # bounded: each round removes at least one option
        out.write_text(yaml.safe_dump(data, sort_keys=False))
        ok, text = check(out, env)
        if ok:
            return out, dropped
        removed = False
        for loc, msg in _problems(text):
            path = _drop(data, loc.split("."))
            if path:
                dropped.append(f"{path} ({msg})")
                removed = True
        if not removed:
            raise BenchError(f"{source.name}: check-config refuses it and nothing can be dropped:\n{text}")
    raise BenchError(f"{source.name}: still invalid after dropping {dropped}")


def _problems(text: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in map(_LOC_LINE.match, text.splitlines()) if m]


def _drop(data: Any, parts: list[str]) -> str | None:
    """Remove the deepest existing node along `parts`; its dotted path, or None when none exists."""
    node, parent, key, walked = data, None, None, []
    for part in parts:
        child_key: Any = int(part) if isinstance(node, list) and part.isdigit() else part
        if (isinstance(node, dict) and child_key in node) or (isinstance(node, list) and isinstance(child_key, int)
                                                               and child_key < len(node)):
            parent, key, node = node, child_key, node[child_key]
            walked.append(part)
        else:
            break
    if parent is None:
        return None
    del parent[key]
    return ".".join(walked)
