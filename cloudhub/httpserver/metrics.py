"""``GET /metrics`` on the HTTPS port: cloudhub's figures in the Prometheus text format.

Behind the admin token (``Authorization: Bearer``), like the admin API: the figures name no
node, but they tell an outsider how big the fleet is and when it is in trouble. What the
figures are: :mod:`cloudhub.figures`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from prometheus_client.core import Metric

from cloudhub.httpserver.join import bearer_token
from cloudhub.pki import Authority
from hive.metrics import CONTENT_TYPE, exposition, make_registry


def metrics_handler(
    authority: Authority, collect: Callable[[], Iterable[Metric]]
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The ``/metrics`` handler: the admin token, then the exposition."""
    registry = make_registry(collect)

    async def handle(request: web.Request) -> web.Response:
        presented = bearer_token(request)
        if presented is None or not authority.check_admin_token(presented):
            return web.Response(status=401, text="missing or wrong admin token\n")
        return web.Response(body=exposition(registry), headers={"Content-Type": CONTENT_TYPE})

    return handle
