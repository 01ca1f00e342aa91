"""How an upstream's connections leave the gateway: directly or through a forward proxy, trusting which CAs.

`Egress.of(config)` gathers what an `UpstreamConfig` says (`proxy`, `ca_file`, `verify`) and the
proxy environment the settings read at start; `pool(url, ...)` makes a transport `Pool` for the
URL's origin through the proxy chosen for that URL (`core/proxies.py`: the upstream's own setting,
else HTTPS_PROXY & co, minus NO_PROXY). The choice is per URL because a managed endpoint's URL is
learned at run time, and NO_PROXY may send it direct while its control plane goes through the proxy.
Every pool of one egress shares one TLS context.
"""

from __future__ import annotations

import ssl
from typing import Literal

from gateway.core.proxies import ProxyEnvironment, ProxyUrl, choose_proxy
from gateway.core.upstream_config import UpstreamConfig
from gateway.upstream.transport.connection import client_context
from gateway.upstream.transport.pool import Pool


class Egress:
    """One upstream's way out: its proxy setting, the environment's proxies, its TLS trust."""

    def __init__(self, proxy: ProxyUrl | Literal[False] | None = None, environment: ProxyEnvironment | None = None,
                 *, ca_file: str | None = None, verify: bool = True) -> None:
        self._proxy = proxy
        self._environment = environment or ProxyEnvironment()
        self._ca_file = ca_file
        self._verify = verify
        self._tls: ssl.SSLContext | None = None

    @classmethod
    def of(cls, config: UpstreamConfig) -> Egress:
        """The egress an upstream's configuration describes."""
        return cls(config.proxy, config.proxy_environment, ca_file=config.ca_file, verify=config.verify)

    def proxy_for(self, url: str) -> ProxyUrl | None:
        """The proxy a connection to `url` goes through (None: direct)."""
        return choose_proxy(self._proxy, self._environment, url)

    def pool(self, url: str, *, limit: int, connect_timeout: float, read_timeout: float | None) -> Pool:
        """A pool for `url`'s origin, through the proxy chosen for it."""
        tls = None
        if url.lower().startswith("https:"):
            if self._tls is None:
                self._tls = client_context(self._ca_file, self._verify)
            tls = self._tls
        return Pool(url, limit=limit, connect_timeout=connect_timeout, read_timeout=read_timeout,
                    proxy=self.proxy_for(url), tls=tls)
