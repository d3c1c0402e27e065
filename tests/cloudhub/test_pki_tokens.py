"""Join tokens: ``{ca-hash}.{JWT}``, verified with clear reasons."""

from __future__ import annotations

import base64
import hashlib
import time
from pathlib import Path

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudhub.pki import Authority
from wire.errors import TokenError


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    return Authority.load_or_create(tmp_path_factory.mktemp("cloud"), advertise=[])


def test_token_prefix_is_sha256_of_ca_der(authority: Authority) -> None:
    """The token starts with the hex SHA-256 of the CA's DER, then a three-part JWT."""
    token = authority.issue_token(60)
    prefix, _, rest = token.partition(".")
    assert prefix == hashlib.sha256(authority.ca_der).hexdigest() == authority.ca_hash
    assert len(rest.split(".")) == 3


def test_token_verifies_in_full_and_bare_form(authority: Authority) -> None:
    """Both ``{hash}.{jwt}`` and the bare JWT (what edgecore sends) verify."""
    token = authority.issue_token(60)
    bare = token.split(".", 1)[1]
    full_claims = authority.verify_join_token(token)
    assert authority.verify_join_token(bare) == full_claims
    assert {"exp", "iat", "jti"} <= set(full_claims)
    assert full_claims["exp"] - full_claims["iat"] == 60


def test_each_token_has_its_own_jti(authority: Authority) -> None:
    """Two tokens issued together are distinguishable."""
    a = authority.verify_join_token(authority.issue_token(60))
    b = authority.verify_join_token(authority.issue_token(60))
    assert a["jti"] != b["jti"]


def test_expired_token_is_refused(authority: Authority) -> None:
    """A token past its exp is refused with "token expired"."""
    token = authority.issue_token(10, now=time.time() - 3600)
    with pytest.raises(TokenError, match=r"^token expired$"):
        authority.verify_join_token(token)


def test_token_from_another_cloudhub_is_refused(authority: Authority, tmp_path: Path) -> None:
    """A JWT signed with another cloudhub's key fails the signature check."""
    other = Authority.load_or_create(tmp_path, advertise=[])
    bare = other.issue_token(60).split(".", 1)[1]
    with pytest.raises(TokenError, match=r"^token signature invalid$"):
        authority.verify_join_token(bare)
    with pytest.raises(TokenError, match="another cloudhub's CA"):
        authority.verify_join_token(other.issue_token(60))


def test_forged_jwt_is_refused(authority: Authority) -> None:
    """A self-made JWT (any key) or an alg=none JWT is refused."""
    forged = jwt.encode(
        {"exp": time.time() + 60, "iat": time.time(), "jti": "x"},
        "a-guessed-secret-of-32-bytes-long!",
    )
    with pytest.raises(TokenError, match=r"^token signature invalid$"):
        authority.verify_join_token(forged)
    unsigned = jwt.encode({"exp": time.time() + 60, "iat": 0, "jti": "x"}, "", algorithm="none")
    with pytest.raises(TokenError):
        authority.verify_join_token(unsigned)


def test_token_without_required_claims_is_malformed(authority: Authority) -> None:
    """A correctly signed JWT that lacks exp is not a join token."""
    key = (authority.data_dir / "token.key").read_text().strip()
    secret = base64.urlsafe_b64decode(key)
    no_exp = jwt.encode({"iat": int(time.time()), "jti": "x"}, secret, algorithm="HS256")
    with pytest.raises(TokenError, match=r"^malformed token$"):
        authority.verify_join_token(no_exp)


@pytest.mark.parametrize("ttl", [0, -1, float("inf"), float("nan")])
def test_nonpositive_ttl_is_refused(authority: Authority, ttl: float) -> None:
    """A token TTL must be a positive finite number of seconds."""
    with pytest.raises(ValueError):
        authority.issue_token(ttl)


@given(st.text(max_size=200))
def test_garbage_tokens_raise_token_error_only(authority: Authority, garbage: str) -> None:
    """Whatever the string, verification either raises TokenError or (never) accepts it."""
    with pytest.raises(TokenError):
        authority.verify_join_token(garbage)
