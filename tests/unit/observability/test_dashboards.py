"""The Grafana dashboard asks only for series the gateway exports, with labels they really carry.

PromQL is parsed just enough to find metric identifiers, the label names of selectors and the
`by (...)` labels; every one must appear in `Metrics().render()` after every recording method
ran. Where promtool exists, every query is also parsed by Prometheus itself (as a recording rule).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.dashboards import (
    DASHBOARDS,
    DATASOURCES,
    LABEL_VALUES,
    all_panels,
    grouping_labels,
    load,
    metric_names,
    queries,
    selector_labels,
    substitute,
)
from tests.support.metrics_exercise import exercise_all, make_metrics


@pytest.fixture(scope="module")
def exported() -> dict[str, set[str]]:
    """Sample name -> label names, from a render after every recording method ran."""
    m = make_metrics()
    exercise_all(m)
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(m.render()[0].decode()):
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    return out


def test_there_is_a_dashboard() -> None:
    assert [p.name for p in DASHBOARDS] == ["hf-gateway-overview.json"]


def test_the_parser_finds_what_it_should() -> None:
    expr = (
        'sum by (status_class) '
        '(rate(gateway_requests_total{status_class=~"4xx|5xx",model=~"$model"}[$__rate_interval]))'
        " / ignoring (status_class) group_left sum(rate(other_metric[5m]))"
        " + histogram_quantile(0.9, x_bucket) * 1e3"
    )
    assert metric_names(expr) == {"gateway_requests_total", "other_metric", "x_bucket"}
    assert dict(selector_labels(expr)) == {"gateway_requests_total": {"status_class", "model"}}
    assert grouping_labels(expr) == {"status_class"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_queried_series_and_label_is_exported(path: Path, exported: dict[str, set[str]]) -> None:
    problems = []
    for where, expr, legend in queries(load(path)):
        names = metric_names(expr)
        problems += [f"{where}: no series {n}" for n in sorted(names - exported.keys())]
        for metric, labels in selector_labels(expr):
            missing = labels - exported.get(metric, set())
            problems += [f"{where}: {metric} has no label {lab}" for lab in sorted(missing)]
        carried = set().union(*(exported.get(n, set()) for n in names))
        problems += [f"{where}: nothing carries by-label {lab}" for lab in sorted(grouping_labels(expr) - carried)]
        legend_labels = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))
        stray = legend_labels - grouping_labels(expr)
        problems += [f"{where}: legend {{{{{lab}}}}} is not a by-label" for lab in sorted(stray)]
        if "histogram_quantile" in expr and not all(n.endswith("_bucket") for n in names if "seconds" in n):
            problems.append(f"{where}: histogram_quantile over something that is not a _bucket series")
    assert problems == []


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_template_variables_query_real_labels(path: Path, exported: dict[str, set[str]]) -> None:
    for variable in load(path)["templating"]["list"]:
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = LABEL_VALUES.match(query)
        assert match, query
        assert match.group(2) in exported.get(match.group(1), set()), query


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_exported_family_is_on_the_dashboard(path: Path, exported: dict[str, set[str]]) -> None:
    used = {re.sub(r"_(bucket|sum|count)$", "", n) for _, expr, _ in queries(load(path)) for n in metric_names(expr)}
    families = {re.sub(r"_(bucket|sum|count)$", "", n) for n in exported if not n.endswith("_created")}
    assert families - used == set()


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_layout_ids_and_datasource(path: Path) -> None:
    uid = yaml.safe_load(DATASOURCES.read_text())["datasources"][0]["uid"]
    dashboard = load(path)
    panels = list(all_panels(dashboard["panels"]))
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        pos = panel["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, panel["title"]
        area = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == uid and panel["targets"], panel["title"]
            assert all(t["datasource"]["uid"] == uid for t in panel["targets"]), panel["title"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_prometheus_itself_parses_every_query(path: Path, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing in CI (.ci/run installs Debian's prometheus package)")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    rules = [
        {"record": f"dashboard:q{i}", "expr": substitute(expr)} for i, (_, expr, _) in enumerate(queries(load(path)))
    ]
    rules_file = tmp_path / "rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(rules_file)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
