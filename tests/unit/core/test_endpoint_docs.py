"""Every gateway configuration shown in docs/endpoints.md and in the README's endpoint section is valid as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from gateway.core.config import load_settings

REPO = Path(__file__).resolve().parents[3]
_BLOCK = re.compile(r"```yaml\n(.*?)```", re.S)


def _blocks() -> list[tuple[str, str]]:
    docs = _BLOCK.findall((REPO / "docs" / "endpoints.md").read_text())
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Dedicated Inference Endpoints"):]
    section = section[: section.index("\n## ", 1)]
    blocks = [(f"docs/endpoints.md #{i}", b) for i, b in enumerate(docs)]
    return blocks + [("README", b) for b in _BLOCK.findall(section)]


@pytest.mark.parametrize("where, block", _blocks(), ids=[w for w, _ in _blocks()])
def test_the_yaml_is_a_valid_configuration(where: str, block: str, tmp_path: Path) -> None:
    assert "kind: endpoint" in block, where
    path = tmp_path / "g.yaml"
    path.write_text(block)
    settings = load_settings(path)
    assert any(u.kind == "endpoint" for u in settings.upstreams.values())
    assert yaml.safe_load(block)
