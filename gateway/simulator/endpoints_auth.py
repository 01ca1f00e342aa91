"""Who may do what on the simulated control plane and on a dedicated endpoint's URL.

HF documents two token scopes, `read-endpoints` (read endpoints and call them) and `write-endpoints` (manage
them); which status a refusal gets is not documented, so these are the simulator's rules:
- no `Authorization: Bearer <token>` -> 401;
- a namespace with configured tokens accepts only those: a token configured for another namespace -> 403,
  an unknown token -> 401, a read-only token on a write call (pause, resume, scale-to-zero) -> 403;
- a namespace without configured tokens accepts any bearer token, with write rights.
On the data plane, `public` endpoints take anyone, `authenticated` ones any bearer token, and `protected` or
`private` ones a token of their namespace (read-only is enough).
Tokens are compared as given and never logged or echoed.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.simulator.endpoints_config import ControlPlaneSpec, EndpointSpec


@dataclass(frozen=True)
class Denial:
    """Why a request is refused: an HTTP status and an HF-style message."""

    status: int
    message: str


_MISSING = Denial(401, "Invalid credentials in Authorization header: a bearer token is required")
_INVALID = Denial(401, "Invalid credentials in Authorization header")


def bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (scheme case-blind), else None."""
    scheme, _, token = (header or "").strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class TokenBook:
    """The configured tokens, by namespace."""

    def __init__(self, spec: ControlPlaneSpec) -> None:
        self._by_namespace: dict[str, dict[str, bool]] = {
            ns: {t.token.get_secret_value(): t.read_only for t in cfg.tokens}
            for ns, cfg in spec.namespaces.items()
            if cfg.tokens
        }

    def namespaces_of(self, token: str) -> list[str]:
        """The namespaces a token was configured for, in config order."""
        return [ns for ns, tokens in self._by_namespace.items() if token in tokens]

    def read_only(self, token: str) -> bool:
        """True when every namespace the token belongs to gave it read rights only."""
        return all(tokens[token] for tokens in self._by_namespace.values() if token in tokens)

    def control(self, namespace: str, header: str | None, *, write: bool) -> Denial | None:
        """Check a control-plane call on `namespace`; None when allowed."""
        token = bearer(header)
        if token is None:
            return _MISSING
        tokens = self._by_namespace.get(namespace)
        if tokens is None:
            return None
        if token not in tokens:
            if self.namespaces_of(token):
                return Denial(403, f"This token has no access to the namespace {namespace}")
            return _INVALID
        if write and tokens[token]:
            return Denial(403, "This token is read-only: managing endpoints needs the write-endpoints scope")
        return None

    def data(self, spec: EndpointSpec, header: str | None) -> Denial | None:
        """Check a request to an endpoint's URL; None when allowed."""
        if spec.type == "public":
            return None
        token = bearer(header)
        if token is None:
            return _MISSING
        if spec.type == "authenticated":
            return None
        tokens = self._by_namespace.get(spec.namespace)
        if tokens is None or token in tokens:
            return None
        return Denial(403, f"This token has no access to the namespace {spec.namespace}") if self.namespaces_of(
            token
        ) else _INVALID
