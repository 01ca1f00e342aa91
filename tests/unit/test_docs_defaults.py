"""The documented defaults are the code's: every scalar of the `cache:` block in docs/cache.md's
Tuning section, and of the `redis` settings block in docs/redis.md, equals the setting's default."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.core.config import CacheConfig, RateLimitConfig

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _yaml_blocks(text: str) -> list[dict[str, Any]]:
    return [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", text, re.S)]


def _documented(doc: str, section: str) -> dict[str, Any]:
    for block in _yaml_blocks((DOCS / doc).read_text(encoding="utf-8")):
        if isinstance(block, dict) and isinstance(block.get(section), dict):
            return {k: v for k, v in block[section].items() if not isinstance(v, dict | list)}
    raise AssertionError(f"no `{section}:` block in docs/{doc}")


@pytest.mark.parametrize(("doc", "section", "model"), [
    ("cache.md", "cache", CacheConfig),
    ("redis.md", "ratelimit", RateLimitConfig),
])
def test_documented_values_are_the_defaults(doc: str, section: str, model: type[Any]) -> None:
    documented = _documented(doc, section)
    defaults = model()
    assert documented, f"docs/{doc} shows no `{section}` setting"
    for name, value in documented.items():
        assert getattr(defaults, name) == value, f"docs/{doc}: {section}.{name} is {value}, the code says " \
                                                 f"{getattr(defaults, name)}"
