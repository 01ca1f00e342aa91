"""Egress proxies: which forward proxy, if any, a connection to an upstream URL goes through.

Two sources, both read once when the settings are built (`config.py` hands the environment in):

- the upstream's `proxy:` setting: a proxy URL (always used for that upstream; `NO_PROXY` does not
  apply to it), or `none` / `false` (never a proxy, whatever the environment says); unset, the
  environment decides;
- the environment, as curl reads it: `https_proxy` for `https://` upstreams, `http_proxy` for
  `http://` ones, `all_proxy` for either when that one is unset; each in lower case, else upper
  case (`HTTPS_PROXY`); an empty value is unset. `no_proxy` / `NO_PROXY` lists what goes direct:
  entries separated by commas (or spaces): `*` (everything); a name, which covers itself and every
  name under it (`example.com`, `.example.com` and `*.example.com` all cover `example.com` and
  `api.example.com`); an IP address or a CIDR block (`10.0.0.0/8`, `fd00::/8`), compared with
  upstream hosts written as IP addresses (names are never resolved for this); any of these with
  `:port`, then only for that port. Loopback is not special: list `localhost,127.0.0.1` to keep a
  local upstream off the proxy.

A proxy URL is `http://[user:password@]host[:port]` (port 80 when not given; a URL without a
scheme is taken as `http://`); user and password are percent-decoded and sent as
`Proxy-Authorization: Basic`. Only plain-HTTP proxies are supported: an `https://` upstream is
reached through one with `CONNECT` (its TLS runs end to end, through the tunnel); TLS to the proxy
itself (`https://proxy`) and SOCKS are refused at start with a clear error.

Invariant: a proxy's credentials never leave `ProxyUrl` but as the `Proxy-Authorization` value:
its `repr`, `str` and `shown` mask them (`http://***@proxy:3128`), configuration errors never quote
the URL, and a dump of the settings writes the masked form.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import BeforeValidator, PlainSerializer

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_SPLIT = re.compile(r"[,\s]+")
_OFF = frozenset({"none", "false", "off", "no", "direct"})


@dataclass(frozen=True, slots=True)
class ProxyUrl:
    """A forward proxy: where it listens and the credentials it wants (never shown)."""

    host: str
    port: int
    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)

    @property
    def shown(self) -> str:
        """The URL as logs and errors may show it: credentials masked."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{'***@' if self.username or self.password else ''}{host}:{self.port}"

    @property
    def authorization(self) -> str | None:
        """The `Proxy-Authorization` value (Basic), or None without credentials."""
        if not self.username and not self.password:
            return None
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode("ascii")

    def __str__(self) -> str:
        return self.shown

    def __repr__(self) -> str:
        return f"ProxyUrl({self.shown!r})"


def parse_proxy_url(text: str, where: str = "") -> ProxyUrl:
    """`http://user:pass@host:port` -> ProxyUrl; otherwise a ValueError starting with `where` (the variable's
    name) that never quotes the URL."""
    said = f"{where}: " if where else ""
    raw = text.strip()
    if "://" not in raw:
        raw = f"http://{raw}"
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise ValueError(f"{said}not a proxy URL (write http://[user:password@]host:port, percent-encoding "
                         "special characters in the password)") from None
    scheme = parts.scheme.lower()
    if scheme != "http":
        raise ValueError(f"{said}{scheme}:// proxies are not supported; give the proxy's http:// URL "
                         "(https upstreams still go through it encrypted end to end, with CONNECT)")
    if not parts.hostname:
        raise ValueError(f"{said}the proxy URL names no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{said}a proxy URL has no path or query (percent-encode special characters "
                         "in the password)")
    return ProxyUrl(parts.hostname, port or 80, unquote(parts.username or ""), unquote(parts.password or ""))


@dataclass(frozen=True, slots=True)
class _Rule:
    """One NO_PROXY entry: a name (covering the names under it) or a network, and maybe a port."""

    name: str | None
    network: IpNetwork | None
    port: int | None


@dataclass(frozen=True, slots=True)
class NoProxy:
    """The parsed NO_PROXY list."""

    everything: bool = False
    rules: tuple[_Rule, ...] = ()

    @classmethod
    def parse(cls, text: str, where: str = "NO_PROXY") -> NoProxy:
        """Parse a NO_PROXY value; ValueError for a port or CIDR block that cannot be read."""
        rules: list[_Rule] = []
        for entry in _SPLIT.split(text.strip().lower()):
            if not entry:
                continue
            if entry == "*":
                return cls(everything=True)
            rules.append(_rule(entry, where))
        return cls(rules=tuple(rules))

    def covers(self, host: str, port: int) -> bool:
        """Whether a connection to `host:port` goes direct."""
        if self.everything:
            return True
        host = host.lower().rstrip(".")
        address = _address(host)
        for rule in self.rules:
            if rule.port is not None and rule.port != port:
                continue
            if rule.network is not None:
                if address is not None and address.version == rule.network.version and address in rule.network:
                    return True
            elif rule.name is not None and (host == rule.name or host.endswith("." + rule.name)):
                return True
        return False


def _rule(entry: str, where: str) -> _Rule:
    host, port = entry, None
    if entry.startswith("["):  # [v6]:port
        host, _, rest = entry[1:].partition("]")
        port = _port(rest[1:], entry, where) if rest.startswith(":") else None
    elif entry.count(":") == 1:  # name:port, v4:port (more than one colon: a bare IPv6 address)
        host, _, text = entry.partition(":")
        port = _port(text, entry, where)
    if "/" in host:
        try:
            return _Rule(None, ipaddress.ip_network(host, strict=False), port)
        except ValueError:
            raise ValueError(f"{where}: {entry!r} is not a CIDR block") from None
    address = _address(host)
    if address is not None:
        return _Rule(None, ipaddress.ip_network(address), port)
    return _Rule(host.removeprefix("*").lstrip(".").rstrip("."), None, port)


def _port(text: str, entry: str, where: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{where}: {entry!r} has no valid port")
    return int(text)


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _first(environ: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """(variable, value) of `name` in lower case, else upper case; None when both are unset or empty."""
    for var in (name, name.upper()):
        value = environ.get(var, "").strip()
        if value:
            return var, value
    return None


@dataclass(frozen=True, slots=True)
class ProxyEnvironment:
    """The proxy variables of the environment, read once."""

    https: ProxyUrl | None = None
    http: ProxyUrl | None = None
    no_proxy: NoProxy = NoProxy()

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ProxyEnvironment:
        """Read https_proxy, http_proxy, all_proxy, no_proxy (lower case first); ValueError when one is unusable."""
        urls: dict[str, ProxyUrl | None] = {}
        for name in ("https_proxy", "http_proxy", "all_proxy"):
            found = _first(environ, name)
            urls[name] = parse_proxy_url(found[1], found[0]) if found else None
        found = _first(environ, "no_proxy")
        no_proxy = NoProxy.parse(found[1], found[0]) if found else NoProxy()
        return cls(urls["https_proxy"] or urls["all_proxy"], urls["http_proxy"] or urls["all_proxy"], no_proxy)

    def proxy_for(self, url: str) -> ProxyUrl | None:
        """The proxy a connection to `url` goes through (None: direct)."""
        parts = urlsplit(url)
        tls = parts.scheme == "https"
        proxy = self.https if tls else self.http
        if proxy is None or not parts.hostname:
            return None
        if self.no_proxy.covers(parts.hostname, parts.port or (443 if tls else 80)):
            return None
        return proxy


def _setting(value: Any) -> Any:
    """The `proxy:` setting as written -> ProxyUrl, False (never a proxy) or None (the environment)."""
    if value is None or isinstance(value, ProxyUrl):
        return value
    if value is False:
        return False
    if isinstance(value, str):
        if not value.strip():
            return None
        if value.strip().lower() in _OFF:
            return False
        return parse_proxy_url(value)
    raise ValueError("give a proxy URL (http://host:port), or none / false to ignore HTTPS_PROXY")


# A per-upstream `proxy:` field: validated from text, dumped masked.
ProxySetting = Annotated[
    ProxyUrl | Literal[False] | None,
    BeforeValidator(_setting),
    PlainSerializer(lambda v: v.shown if isinstance(v, ProxyUrl) else v),
]


def choose_proxy(setting: ProxyUrl | Literal[False] | None, environment: ProxyEnvironment, url: str) -> ProxyUrl | None:
    """The proxy for a connection to `url`: the upstream's own setting, else the environment's."""
    if setting is False:
        return None
    if setting is not None:
        return setting
    return environment.proxy_for(url)
