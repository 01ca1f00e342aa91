"""Redis URLs: parsed once, when the settings load, so a wrong one fails `check-config` and `serve` alike.

Shapes (docs/redis.md):

    redis://[user[:password]@]host[:port][/db]           one server
    rediss://...?ssl_ca_certs=/ca.pem                    one server over TLS
    unix:///run/redis.sock[?db=N&password=...]           one server on a unix socket
    redis+cluster://host:port[,host:port...]             a Redis Cluster (seed nodes); rediss+cluster:// over TLS
    redis+sentinel://host:port[,host:port...]/master[/db] the master Sentinel names; rediss+sentinel:// over TLS

TLS query options: `ssl_ca_certs` (CA file; default: the system's), `ssl_certfile` + `ssl_keyfile`
(a client certificate), `ssl_cert_reqs` (`required` by default, `none` to skip verification),
`ssl_check_hostname` (`true` by default when verifying). Any other query option is refused by
name rather than silently ignored.

Invariant: the password never appears in a repr, a message or a log line; `redacted()` is the
form to show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

Mode = Literal["single", "cluster", "sentinel"]
SUPPORTED_MODES: frozenset[str] = frozenset(("single",))  # what gateway/store can open today
_SCHEMES: dict[str, tuple[bool, Mode]] = {
    "redis": (False, "single"), "rediss": (True, "single"), "unix": (False, "single"),
    "redis+cluster": (False, "cluster"), "rediss+cluster": (True, "cluster"),
    "redis+sentinel": (False, "sentinel"), "rediss+sentinel": (True, "sentinel"),
}  # fmt: skip
_TLS_OPTIONS = {"ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname"}
_OPTIONS = _TLS_OPTIONS | {"db", "password", "username"}


@dataclass(frozen=True, slots=True)
class TlsOptions:
    """How to verify the server (and, optionally, present a client certificate)."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True  # ssl_cert_reqs=required (default) | none
    check_hostname: bool = True


@dataclass(frozen=True, slots=True)
class RedisUrl:
    """One parsed Redis URL."""

    mode: Mode
    hosts: tuple[tuple[str, int], ...]  # the server; cluster: seed nodes; sentinel: the sentinels
    path: str | None = None  # a unix socket instead of hosts
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: TlsOptions | None = None
    service: str | None = None  # sentinel: the master's name

    def redacted(self) -> str:
        """The URL as it may be shown: the password replaced by `***`."""
        scheme = ("rediss" if self.tls else "redis") + ("" if self.mode == "single" else f"+{self.mode}")
        if self.path is not None:
            return f"unix://{self.path}"
        user = self.username or ""
        auth = f"{user}:***@" if self.password else (f"{user}@" if user else "")
        hosts = ",".join(f"{h}:{p}" for h, p in self.hosts)
        tail = f"/{self.service}" if self.service else ""
        return f"{scheme}://{auth}{hosts}{tail}/{self.db}"


def parse_redis_url(url: str) -> RedisUrl:
    """Parse `url`; ValueError naming what is wrong (never quoting the password)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        known = ", ".join(f"{s}://" for s in _SCHEMES)
        raise ValueError(f"a Redis URL starts with one of {known}")
    tls, mode = _SCHEMES[scheme.lower()]
    parts = urlsplit(f"x://{rest}")
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    unknown = sorted(set(query) - _OPTIONS)
    if unknown:
        raise ValueError(f"unknown Redis URL option {unknown[0]!r} (known: {', '.join(sorted(_OPTIONS))})")
    if not tls and set(query) & _TLS_OPTIONS:
        raise ValueError("ssl_* options need a rediss:// URL")
    username, password = _credentials(parts.netloc, query)
    tls_options = _tls(query) if tls else None
    if scheme.lower() == "unix":
        if not parts.path:
            raise ValueError("a unix:// Redis URL names the socket's path: unix:///run/redis.sock")
        return RedisUrl("single", (), path=unquote(parts.path), db=_int(query.get("db", "0"), "db"),
                        username=username, password=password)
    hosts = _hosts(parts.netloc.rpartition("@")[2], default_port=26379 if mode == "sentinel" else 6379)
    segments = [s for s in parts.path.split("/") if s]
    service = None
    if mode == "sentinel":
        if not segments:
            raise ValueError("a redis+sentinel:// URL names the master: redis+sentinel://host:26379/mymaster")
        service, segments = unquote(segments[0]), segments[1:]
    elif mode == "single" and len(hosts) > 1:
        raise ValueError("several hosts need redis+cluster:// or redis+sentinel://")
    db = _int(segments[0], "db") if segments else _int(query.get("db", "0"), "db")
    if mode == "cluster" and db != 0:
        raise ValueError("a Redis Cluster has only database 0")
    return RedisUrl(mode, hosts, db=db, username=username, password=password, tls=tls_options, service=service)


def _credentials(netloc: str, query: dict[str, str]) -> tuple[str | None, str | None]:
    userinfo = netloc.rpartition("@")[0] if "@" in netloc else ""
    user, has_pw, pw = userinfo.partition(":")
    username = unquote(user) or query.get("username") or None
    password = unquote(pw) if has_pw else query.get("password")
    return username, password or None


def _hosts(text: str, default_port: int) -> tuple[tuple[str, int], ...]:
    hosts: list[tuple[str, int]] = []
    for item in filter(None, text.split(",")):
        if item.startswith("["):  # [::1]:6379
            host, _, port = item[1:].partition("]")
            port = port.lstrip(":")
        else:
            host, _, port = item.rpartition(":") if ":" in item else (item, "", "")
        hosts.append((host or "localhost", _int(port, "port") if port else default_port))
    return tuple(hosts) or (("localhost", default_port),)


def _tls(query: dict[str, str]) -> TlsOptions:
    reqs = query.get("ssl_cert_reqs", "required").lower()
    if reqs not in ("required", "none", "optional"):
        raise ValueError("ssl_cert_reqs is required, optional or none")
    check = query.get("ssl_check_hostname", "true").lower()
    if check not in ("true", "false"):
        raise ValueError("ssl_check_hostname is true or false")
    verify = reqs != "none"
    cert, key = query.get("ssl_certfile"), query.get("ssl_keyfile")
    if key and not cert:
        raise ValueError("ssl_keyfile needs ssl_certfile")
    return TlsOptions(query.get("ssl_ca_certs"), cert, key, verify, verify and check == "true")


def _int(text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"the Redis URL's {what} must be a number") from None
    if value < 0:
        raise ValueError(f"the Redis URL's {what} must not be negative")
    return value
