"""Reading the Grafana dashboards: their PromQL queries, and just enough PromQL parsing to find the
metric names, selector labels and grouping labels they use."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((REPO / "grafana" / "dashboards").glob("*.json"))
DATASOURCES = REPO / "grafana" / "provisioning" / "datasources" / "prometheus.yml"

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_IDENT = re.compile(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}
    | {"inf", "nan"}
)
_GRAFANA_VARS = re.compile(r"\$(__rate_interval|__interval|__range)\b|\$\{?(\w+)\}?")
LABEL_VALUES = re.compile(r"^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*(\w+)\s*\)$")


def substitute(expr: str) -> str:
    """Grafana variables replaced by what Prometheus would see with "All" selected."""
    return _GRAFANA_VARS.sub(lambda m: "1m" if m.group(1) else ".*", expr)


def metric_names(expr: str) -> set[str]:
    """Metric identifiers in a PromQL expression (not functions, keywords or grouping labels)."""
    text = _STRING.sub('""', substitute(expr))
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = _GROUPING.sub(" ", text)
    return {m.group(1) for m in _IDENT.finditer(text) if not m.group(2) and m.group(1) not in _KEYWORDS}


def selector_labels(expr: str) -> Iterator[tuple[str, set[str]]]:
    """(metric, label names in its matchers) for every `metric{...}` selector."""
    text = _STRING.sub('""', substitute(expr))
    for match in _SELECTOR.finditer(text):
        yield match.group(1), set(_MATCHER_LABEL.findall(match.group(2)))


def grouping_labels(expr: str) -> set[str]:
    return {label.strip() for m in _GROUPING.finditer(expr) for label in m.group(2).split(",") if label.strip()}


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))  # collapsed rows keep their panels inside


def load(path: Path) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(path.read_text())
    return dashboard


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(where, expr, legendFormat) for every panel target."""
    for panel in all_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            where = f"panel {panel['id']} {panel['title']!r} {target['refId']}"
            yield where, target["expr"], target.get("legendFormat", "")
