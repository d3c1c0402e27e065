"""Join tokens: what ``edgecore join --token`` presents to get its first node certificate.

Why it looks the way it does: **a token is ``{sha256-hex of CA DER}.{JWT}``**, as KubeEdge's.
The prefix lets an edge pin the CA it fetched over an unauthenticated connection; the JWT
(HS256, with ``exp``, ``iat`` and ``jti``) proves the token came from this cloudhub. KubeEdge
signs the JWT with the CA key itself; we use a separate random HMAC secret (``token.key``) so
the CA private key is only ever used for X.509 signatures.

These are plain functions of the HMAC key and the CA hash; :class:`cloudhub.pki.Authority`
holds both and exposes them as ``issue_token``/``verify_join_token``. Counting a token's uses
is not done here but by the join endpoint, in the auth ledger.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import uuid
from typing import Any

import jwt

from cloudhub.pki.nodes import is_valid_node_name
from wire.errors import TokenError

#: A full token is "{64 hex chars}.{jwt}".
_HASH_PREFIX = re.compile(r"^[0-9a-f]{64}$")
_JWT_ALGORITHM = "HS256"


def ca_hash_of(ca_der: bytes) -> str:
    """The token prefix for a CA: lower-case hex SHA-256 of its DER encoding."""
    return hashlib.sha256(ca_der).hexdigest()


def issue_token(
    token_key: bytes,
    ca_hash: str,
    ttl_seconds: float,
    *,
    now: float | None = None,
    uses: int | None = None,
    node: str | None = None,
) -> str:
    """A join token ``{ca_hash}.{JWT}`` valid for ``ttl_seconds`` from ``now``.

    Args:
        token_key: the HMAC secret the JWT is signed with (``token.key``).
        ca_hash: :func:`ca_hash_of` the CA, the token's prefix.
        ttl_seconds: lifetime, > 0.
        now: issue time (unix seconds); defaults to the current time. Tests pass a past
            time to get an already expired token.
        uses: how many joins the token admits (claim ``uses``; counted by the join
            endpoint in the auth ledger); ``None`` for any number until it expires.
        node: the only node name the token admits (claim ``node``); ``None`` for any.

    Raises:
        ValueError: ``ttl_seconds`` is not a positive finite number, ``uses`` < 1, or
            ``node`` is not a valid node name.
    """
    if not ttl_seconds > 0 or ttl_seconds == float("inf"):
        raise ValueError(f"token TTL must be a positive number of seconds, not {ttl_seconds}")
    if uses is not None and uses < 1:
        raise ValueError(f"token uses must be at least 1, not {uses}")
    if node is not None and not is_valid_node_name(node):
        raise ValueError(f"invalid node name {node!r}: must be a DNS-1123 subdomain")
    issued = dt.datetime.now(dt.UTC).timestamp() if now is None else now
    claims: dict[str, Any] = {
        "iat": int(issued),
        "exp": int(issued + ttl_seconds),
        "jti": uuid.uuid4().hex,
    }
    if uses is not None:
        claims["uses"] = uses
    if node is not None:
        claims["node"] = node
    token = jwt.encode(claims, token_key, algorithm=_JWT_ALGORITHM)
    return f"{ca_hash}.{token}"


def verify_join_token(token_key: bytes, ca_hash: str, token: str) -> dict[str, Any]:
    """Check a join token (bare JWT, or the full ``{hash}.{jwt}``) and return its claims.

    ``token_key`` and ``ca_hash`` are as for :func:`issue_token`.

    Raises:
        TokenError: "token expired", "token signature invalid", "malformed token", or
            "token is for another cloudhub's CA" when the full form's hash is not ours.
    """
    bare = token.strip()
    parts = bare.split(".")
    if len(parts) == 4 and _HASH_PREFIX.match(parts[0]):
        if not hmac.compare_digest(parts[0], ca_hash):
            raise TokenError("token is for another cloudhub's CA")
        bare = ".".join(parts[1:])
    elif len(parts) != 3:
        raise TokenError("malformed token")
    try:
        claims: dict[str, Any] = jwt.decode(
            bare,
            token_key,
            algorithms=[_JWT_ALGORITHM],
            options={"require": ["exp", "iat", "jti"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenError("token expired") from exc
    except jwt.InvalidSignatureError as exc:
        raise TokenError("token signature invalid") from exc
    except jwt.InvalidTokenError as exc:
        raise TokenError("malformed token") from exc
    uses = claims.get("uses")
    if uses is not None and (type(uses) is not int or uses < 1):
        raise TokenError("malformed token")
    node = claims.get("node")
    if node is not None and not isinstance(node, str):
        raise TokenError("malformed token")
    return claims
