"""The admin API refuses every request without the admin token, and such a request changes
nothing."""

from __future__ import annotations

import pytest

from cloudhub.app import CloudApp
from tests.security.conftest import admin
from wire.errors import NotFound

pytestmark = pytest.mark.timeout(20)

CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}}
CALLS = [
    ("POST", "/tokens", {"ttl_seconds": 60}),
    ("POST", "/apply", {"objects": [CM]}),
    ("GET", "/nodes", None),
    ("GET", "/secrets", None),
    ("GET", "/secrets/default/s", None),
    ("DELETE", "/nodes/_/edge-1", None),
    ("DELETE", "/configmaps/default/keep", None),
    ("GET", "/no-such-endpoint", None),
]


@pytest.mark.parametrize("token", [None, "", "wrong", "Basic abc"])
@pytest.mark.parametrize(("method", "path", "body"), CALLS)
async def test_request_without_admin_token_is_refused(
    cloud: CloudApp, method: str, path: str, body: object, token: str | None
) -> None:
    """Missing, empty or wrong credential: 401 with a JSON error, whatever the endpoint."""
    status, answer = await admin(cloud, method, path, body, token=token)
    assert status == 401
    assert answer == {"error": "missing or wrong admin token"}


async def test_refused_requests_change_nothing(cloud: CloudApp) -> None:
    """An unauthenticated apply creates nothing and a delete deletes nothing."""
    keep = {**CM, "metadata": {"name": "keep", "namespace": "default"}}
    assert (await admin(cloud, "POST", "/apply", {"objects": [keep]}))[0] == 200
    assert (await admin(cloud, "POST", "/apply", {"objects": [CM]}, token="x"))[0] == 401
    assert (await admin(cloud, "DELETE", "/configmaps/default/keep", token=None))[0] == 401
    with pytest.raises(NotFound):
        await cloud.store.get("configmap", "default", "c")
    await cloud.store.get("configmap", "default", "keep")


async def test_admin_token_is_not_a_join_token_and_vice_versa(cloud: CloudApp) -> None:
    """A join token does not open the admin API."""
    join_token = cloud.authority.issue_token(60)
    assert (await admin(cloud, "GET", "/nodes", token=join_token))[0] == 401
    assert (await admin(cloud, "GET", "/nodes"))[0] == 200
