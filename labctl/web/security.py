"""Who may change state through the dashboard, and proof that a request came from its own page.

The operator sets a token (`LABCTL_WEB_TOKEN`, or a file named by `labctl serve --token-file`);
without one the dashboard is read-only. Signing in with the token sets a session cookie
(HttpOnly, SameSite=Strict) that holds an HMAC of a per-process nonce under the token, never the
token itself; restarting the server or changing the token signs everyone out.

A state-changing request must carry three things (OWASP's cross-site request forgery cheat
sheet: a synchronizer token, an Origin check, SameSite cookies):

* the session cookie (or ``Authorization: Bearer <token>`` for scripts, which a browser never
  sends on its own, so it needs no forgery check);
* the page's CSRF token, as the ``X-CSRF-Token`` header or a ``csrf`` form field;
* an ``Origin`` (or, failing it, ``Referer``) equal to the dashboard's own origin.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from starlette.requests import Request

TOKEN_ENV = "LABCTL_WEB_TOKEN"
SESSION_COOKIE = "labctl_session"
CSRF_HEADER = "x-csrf-token"


class Refusal(enum.Enum):
    """Why a state-changing request was refused (the text is what the operator reads)."""

    READ_ONLY = "this dashboard is read-only: start `labctl serve` with LABCTL_WEB_TOKEN set"
    NOT_SIGNED_IN = "sign in with the operator token first"
    BAD_TOKEN = "wrong operator token"
    CROSS_ORIGIN = "request refused: it does not come from this dashboard's own page"
    BAD_CSRF = "request refused: missing or stale form token; reload the page"


@dataclass(frozen=True)
class Guard:
    """The operator token (None: read-only) and this process's nonce."""

    token: str | None
    nonce: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    @property
    def read_only(self) -> bool:
        return self.token is None

    def _mac(self, purpose: str) -> str:
        assert self.token is not None
        return hmac.new(self.token.encode(), purpose.encode() + self.nonce,
                        hashlib.sha256).hexdigest()

    def session_value(self) -> str:
        return self._mac("session")

    def csrf_token(self) -> str:
        return self._mac("csrf")

    def token_matches(self, offered: str) -> bool:
        return self.token is not None and hmac.compare_digest(offered.encode(),
                                                              self.token.encode())

    def signed_in(self, request: Request) -> bool:
        cookie = request.cookies.get(SESSION_COOKIE)
        return (self.token is not None and cookie is not None
                and hmac.compare_digest(cookie, self.session_value()))

    def _bearer(self, request: Request) -> bool:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.token_matches(value.strip())

    def check_sign_in(self, request: Request, offered: str) -> Refusal | None:
        """Refusal of a sign-in attempt, or None when `offered` is the token."""
        if self.read_only:
            return Refusal.READ_ONLY
        if not same_origin(request):
            return Refusal.CROSS_ORIGIN
        return None if self.token_matches(offered) else Refusal.BAD_TOKEN

    def check_change(self, request: Request, form_csrf: str | None) -> Refusal | None:
        """Refusal of a state-changing request, or None when it may go ahead."""
        if self.read_only:
            return Refusal.READ_ONLY
        if self._bearer(request):
            return None
        if not self.signed_in(request):
            return Refusal.NOT_SIGNED_IN
        if not same_origin(request):
            return Refusal.CROSS_ORIGIN
        offered = request.headers.get(CSRF_HEADER) or form_csrf or ""
        if not hmac.compare_digest(offered.encode(), self.csrf_token().encode()):
            return Refusal.BAD_CSRF
        return None


def same_origin(request: Request) -> bool:
    """The request's Origin (else Referer) names this server as the browser reached it."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return False
    parts = urlsplit(source)
    host = request.headers.get("host", "")
    return parts.scheme == request.url.scheme and parts.netloc == host


def token_from(env: dict[str, str] | None = None, token_file: str | None = None) -> str | None:
    """The operator token: the file's first line if a file is given, else LABCTL_WEB_TOKEN."""
    if token_file is not None:
        with open(token_file, encoding="utf-8") as f:
            token = f.readline().strip()
    else:
        token = (env if env is not None else os.environ).get(TOKEN_ENV, "").strip()
    return token or None
