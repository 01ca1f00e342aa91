"""Model name -> Route: exact ids, aliases, glob patterns, then the `*` default, in that order.

A Route is built once per configured model entry; resolving a name is a dict hit after the first
time (bounded memo). The `:provider` / `:policy` suffix of router-style names (`org/name:novita`) is
ignored for matching and kept for forwarding to `hf` upstreams, which understand it.

Invariant: a Route only ever points at configured upstreams, so no client-supplied name can make
the gateway call a host that is not in the configuration.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import Any

from gateway.core.call import Deployment, Route, Upstream
from gateway.core.config import ModelConfig
from gateway.core.errors import UnknownModel

_MEMO_LIMIT = 4096


class Router:
    """Resolves client model names to Routes."""

    def __init__(self, models: Iterable[ModelConfig], upstreams: dict[str, Upstream]) -> None:
        self._exact: dict[str, Route] = {}
        self._patterns: list[tuple[str, Route]] = []
        self._default: Route | None = None
        self._memo: dict[str, Route] = {}
        self.routes: list[Route] = []
        for cfg in models:
            route = _build_route(cfg, upstreams)
            self.routes.append(route)
            if cfg.name == "*":
                self._default = self._default or route
            elif _is_pattern(cfg.name):
                self._patterns.append((cfg.name, route))
            else:
                self._exact.setdefault(cfg.name, route)
            for alias in cfg.aliases:
                self._exact.setdefault(alias, route)

    def resolve(self, name: str) -> Route:
        """The Route for a client-supplied model name, or UnknownModel."""
        hit = self._memo.get(name)
        if hit is not None:
            return hit
        route = self._lookup(name) or self._lookup(name.split(":", 1)[0]) or self._default
        if route is None:
            raise UnknownModel(
                f"model {name!r} is not configured on this gateway; add it under `models:` in the config "
                "(an exact name, an alias, a pattern like 'org/*', or '*' for a default route)"
            )
        if len(self._memo) < _MEMO_LIMIT:
            self._memo[name] = route
        return route

    def labels(self) -> list[str]:
        """Every model name or alias a metric may carry."""
        out: list[str] = []
        for r in self.routes:
            if r.name != "*":
                out.append(r.label)
            out.extend(r.aliases)
        return out

    def catalog(self) -> list[dict[str, Any]]:
        """`GET /v1/models`: configured models and aliases (patterns and `*` are not models: see `patterns`)."""
        seen: list[dict[str, Any]] = []
        for r in self.routes:
            names = [] if _is_pattern(r.name) or r.name == "*" else [r.name]
            seen.extend(model_object(n, r) for n in names + list(r.aliases))
        return seen

    def patterns(self) -> list[dict[str, Any]]:
        """The routes that serve ids nobody listed: glob patterns, then `*`, in the order they are tried."""
        out = [{"pattern": p, "upstreams": _upstreams(r)} for p, r in self._patterns]
        if self._default is not None:
            out.append({"pattern": "*", "upstreams": _upstreams(self._default)})
        return out

    def model(self, name: str) -> dict[str, Any]:
        """`GET /v1/models/{id}`: a model object for any id this router routes, else UnknownModel."""
        return model_object(name, self.resolve(name))

    def _lookup(self, name: str) -> Route | None:
        route = self._exact.get(name)
        if route is not None:
            return route
        for pattern, candidate in self._patterns:
            if fnmatchcase(name, pattern):
                return candidate
        return None


def model_object(name: str, route: Route) -> dict[str, Any]:
    """An OpenAI model object; `owned_by` names the upstream of the route's first deployment."""
    return {"id": name, "object": "model", "created": 0, "owned_by": route.deployments[0].upstream.name}


def _upstreams(route: Route) -> list[str]:
    return list(dict.fromkeys(d.upstream.name for d in route.deployments))


def _is_pattern(name: str) -> bool:
    return name != "*" and any(ch in name for ch in "*?[")


def _build_route(cfg: ModelConfig, upstreams: dict[str, Upstream]) -> Route:
    deployments = tuple(
        Deployment(
            id=d.upstream if d.model is None else f"{d.upstream}:{d.model}",
            upstream=upstreams[d.upstream],
            model=d.model,
        )
        for d in cfg.deployments
    )
    label = "other" if cfg.name == "*" else cfg.name
    return Route(
        label=label, name=cfg.name, task=cfg.task, deployments=deployments, config=cfg, aliases=tuple(cfg.aliases)
    )
