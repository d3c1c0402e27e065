"""Who may see the fleet page: the admin token, given once, then an HttpOnly cookie.

The token arrives either in the URL (``/ui/?token=...``, handy from a terminal) or through the
login form. Either way the answer sets a cookie and sends the browser on to a URL without the
token, so it does not stay in the address bar or the history. The cookie holds no secret that
works elsewhere: it is an HMAC of a fixed label keyed with the admin token, so it is useless
against the admin API and stops working when ``admin.token`` is replaced.
"""

from __future__ import annotations

import hashlib
import hmac

from aiohttp import web

from cloudhub.pki import Authority

COOKIE = "edgebridge_ui"
_LABEL = b"edgebridge fleet page session v1"


def session_value(authority: Authority) -> str:
    return hmac.new(authority.admin_token.encode(), _LABEL, hashlib.sha256).hexdigest()


def has_session(request: web.Request, authority: Authority) -> bool:
    presented = request.cookies.get(COOKIE, "")
    return bool(presented) and hmac.compare_digest(presented, session_value(authority))


def start_session(response: web.StreamResponse, authority: Authority) -> None:
    """Set the session cookie on ``response`` (secure, script-proof, this site only)."""
    response.set_cookie(
        COOKIE,
        session_value(authority),
        path="/ui/",
        httponly=True,
        secure=True,
        samesite="Strict",
    )


def end_session(response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path="/ui/")
