"""Logs and exec of pods, relayed to their edge (see :mod:`cloudhub.cloudstream.relay`).

Endpoints::

    GET /admin/v1/pods/{ns}/{name}/log?container=&tailLines=&follow=&timestamps=&previous=
        plain: the log as text, streamed; a websocket upgrade: the channel protocol
        (:mod:`wire.channels`, stdout channel, then a Status), which edgectl uses
    GET /admin/v1/pods/{ns}/{name}/exec?container=&command=..&command=..&stdin=&tty=
        a websocket, channel protocol (``v5.channel.k8s.io``/``v4.channel.k8s.io``)

and what the Kubernetes API server calls on a kubelet (the Node advertises this port as its
kubelet endpoint in Kubernetes mode)::

    GET /containerLogs/{ns}/{name}/{container}?tailLines=&follow=&timestamps=&previous=
    GET|POST /exec/{ns}/{name}/{container}?command=..&stdin=&stdout=&stderr=&tty=

Who may: ``/admin/`` is the admin token's (any node's pods, checked by the admin middleware).
The kubelet-shaped paths take the admin token too, or a client certificate: a node's reaches
only the pods bound to that node (a node identity reaches no other node's); one signed by
``--kubelet-client-ca`` (the API server's kubelet client certificate) reaches every pod. Errors
found before the stream starts (unknown pod or container, pod not bound, node offline) are
one line with an HTTP status; errors after it (the edge's runtime) end the stream with a
Status on the error channel (a websocket), or cut a plain log short.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, TypeVar

from aiohttp import WSMsgType, web
from cryptography import x509
from pydantic import ValidationError

from cloudhub.auth.revocation import RevocationCheck
from cloudhub.cloudstream.relay import NodeOffline, RelayedStream, StreamOpener
from cloudhub.httpserver.admin import ADMIN_PREFIX
from cloudhub.httpserver.join import _peer_cert, bearer_token
from cloudhub.pki import Authority
from cloudhub.pki.nodes import check_node_cert_time, read_node_cert
from cloudhub.store.base import ObjectStore
from wire import channels
from wire.errors import AuthError, BridgeError, DecodeError, Forbidden, InvalidObject, NotFound
from wire.streams import Chunk, Close, ExecRequest, LogsRequest

log = logging.getLogger(__name__)

R = TypeVar("R", LogsRequest, ExecRequest)

#: seconds between looks at a plain log client's connection while the log is quiet
_CLIENT_CHECK = 1.0
#: largest client message on an exec websocket (stdin pieces are small)
_MAX_CLIENT_MESSAGE = 1024 * 1024


class StreamApi:
    """The handlers, bound to the store (pods -> nodes) and the relay."""

    def __init__(
        self,
        *,
        store: ObjectStore,
        opener: StreamOpener,
        authority: Authority,
        revocations: RevocationCheck,
    ) -> None:
        self._store = store
        self._opener = opener
        self._authority = authority
        self._revocations = revocations
        self._ca_subject = x509.load_der_x509_certificate(authority.ca_der).subject

    def register(self, router: web.UrlDispatcher) -> None:
        pod = ADMIN_PREFIX + "pods/{namespace}/{name}/"
        router.add_get(pod + "log", self.admin_logs, allow_head=False)
        router.add_get(pod + "exec", self.admin_exec, allow_head=False)
        router.add_get(
            "/containerLogs/{namespace}/{name}/{container}", self.kubelet_logs, allow_head=False
        )
        router.add_route("GET", "/exec/{namespace}/{name}/{container}", self.kubelet_exec)
        router.add_route("POST", "/exec/{namespace}/{name}/{container}", self.kubelet_exec)

    # -- admin API (errors become JSON through the admin middleware) ----------------------------

    async def admin_logs(self, request: web.Request) -> web.StreamResponse:
        req = _logs_request(request, request.query.get("container") or None)
        node, req = await self._target(req, caller_node=None)
        return await self._serve_logs(request, node, req)

    async def admin_exec(self, request: web.Request) -> web.StreamResponse:
        req = _exec_request(request, request.query.get("container") or None)
        node, req = await self._target(req, caller_node=None)
        return await self._serve_channels(request, node, req)

    # -- kubelet-shaped (plain-text errors, as a kubelet answers) -------------------------------

    async def kubelet_logs(self, request: web.Request) -> web.StreamResponse:
        try:
            caller = self._kubelet_caller(request)
            req = _logs_request(request, request.match_info["container"])
            node, req = await self._target(req, caller_node=caller)
            return await self._serve_logs(request, node, req)
        except BridgeError as exc:
            return _plain_error(exc)
        except web.HTTPException as exc:
            return web.Response(status=exc.status, text=(exc.text or exc.reason) + "\n")

    async def kubelet_exec(self, request: web.Request) -> web.StreamResponse:
        try:
            caller = self._kubelet_caller(request)
            req = _exec_request(request, request.match_info["container"])
            node, req = await self._target(req, caller_node=caller)
            return await self._serve_channels(request, node, req)
        except BridgeError as exc:
            return _plain_error(exc)
        except web.HTTPException as exc:
            return web.Response(status=exc.status, text=(exc.text or exc.reason) + "\n")

    def _kubelet_caller(self, request: web.Request) -> str | None:
        """None for the admin (any node); a node's name for its client certificate.

        Raises:
            AuthError: neither credential, or a certificate that is not a live node's.
        """
        token = bearer_token(request)
        if token:
            if self._authority.check_admin_token(token):
                return None
            raise AuthError("wrong bearer token")
        der = _peer_cert(request)
        if der is None:
            raise AuthError("no credential: an admin token or a client certificate is needed")
        cert = x509.load_der_x509_certificate(der)
        if cert.issuer != self._ca_subject:
            # TLS verified it against the only other CA trusted here, --kubelet-client-ca:
            # the API server, which may reach every pod (as it may on a kubelet).
            now = time.time()
            if not (
                cert.not_valid_before_utc.timestamp() <= now <= cert.not_valid_after_utc.timestamp()
            ):
                raise AuthError("the kubelet client certificate is not valid now")
            return None
        peer = read_node_cert(der)
        if peer is None:
            raise AuthError("client certificate does not name a node (CN=system:node:NAME)")
        check_node_cert_time(peer, time.time())
        if self._revocations.is_revoked(peer.serial):
            raise AuthError(f"node certificate of {peer.node} was revoked")
        return peer.node

    # -- shared ---------------------------------------------------------------------------

    async def _target(self, req: R, *, caller_node: str | None) -> tuple[str, R]:
        """The pod's node, and ``req`` with its container resolved.

        Raises:
            NotFound: no such pod or container.
            InvalidObject: the pod is not bound, or has several containers and none was named.
            Forbidden: ``caller_node`` is set and the pod is bound elsewhere.
        """
        try:
            pod = await self._store.get("pod", req.namespace, req.pod)
        except NotFound:
            raise NotFound(f'pods "{req.pod}" not found in namespace {req.namespace}') from None
        spec: dict[str, Any] = pod.get("spec") or {}
        node = spec.get("nodeName")
        if not isinstance(node, str) or not node:
            raise InvalidObject(f"pod {req.namespace}/{req.pod} is not bound to a node")
        if caller_node is not None and node != caller_node:
            raise Forbidden(f"node {caller_node} may not reach pods of node {node}")
        names = [
            str(c.get("name"))
            for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]
            if isinstance(c, dict)
        ]
        container = req.container
        if container is None:
            main = [str(c.get("name")) for c in spec.get("containers") or [] if isinstance(c, dict)]
            if len(main) != 1:
                raise InvalidObject(
                    f"a container name must be specified for pod {req.pod}, choose one of: "
                    f"[{' '.join(main)}]"
                )
            container = main[0]
        elif container not in names:
            raise NotFound(f"container {container} is not valid for pod {req.pod}")
        return node, req.model_copy(update={"container": container})

    async def _open(self, node: str, req: LogsRequest | ExecRequest) -> RelayedStream:
        try:
            return await self._opener.open(node, req)
        except NodeOffline as exc:
            raise web.HTTPServiceUnavailable(text=str(exc)) from None

    async def _serve_logs(
        self, request: web.Request, node: str, req: LogsRequest
    ) -> web.StreamResponse:
        if _wants_websocket(request):
            return await self._serve_channels(request, node, req)
        stream = await self._open(node, req)
        try:
            first = await self._next_or_gone(request, stream)
            if first is None:
                return web.Response(status=499)
            if isinstance(first, Close) and first.error:
                raise _refused(first)
            response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
            await response.prepare(request)
            event: Chunk | Close | None = first
            while isinstance(event, Chunk):
                await response.write(event.data)
                stream.consumed(len(event.data))
                event = await self._next_or_gone(request, stream)
            if isinstance(event, Close) and event.error:
                # Too late for a status: cut the response short, so the client sees it broke.
                log.info("log stream of %s/%s ended: %s", req.namespace, req.pod, event.error)
                if request.transport is not None:
                    request.transport.close()
                return response
            await response.write_eof()
            return response
        finally:
            stream.cancel()

    async def _next_or_gone(
        self, request: web.Request, stream: RelayedStream
    ) -> Chunk | Close | None:
        """The stream's next event; None once the plain HTTP client went away."""
        while True:
            try:
                return await asyncio.wait_for(stream.next(), _CLIENT_CHECK)
            except TimeoutError:
                transport = request.transport
                if transport is None or transport.is_closing():
                    return None

    async def _serve_channels(
        self, request: web.Request, node: str, req: LogsRequest | ExecRequest
    ) -> web.StreamResponse:
        """A websocket in the channel protocol, relaying ``req``'s stream."""
        ws = web.WebSocketResponse(
            protocols=channels.PROTOCOLS, max_msg_size=_MAX_CLIENT_MESSAGE, autoping=True
        )
        if not ws.can_prepare(request).ok:
            raise InvalidObject("this endpoint needs a websocket upgrade")
        stream = await self._open(node, req)
        await ws.prepare(request)
        v5 = ws.ws_protocol == channels.V5
        reader = asyncio.create_task(_client_input(ws, stream, v5=v5), name=f"ws:{stream.id[:8]}")
        try:
            while True:
                next_event = asyncio.ensure_future(stream.next())
                done, _ = await asyncio.wait(
                    {next_event, reader}, return_when=asyncio.FIRST_COMPLETED
                )
                if next_event not in done:
                    next_event.cancel()
                    return ws  # the client closed
                event = next_event.result()
                if isinstance(event, Chunk):
                    channel = channels.STDERR if event.channel == "stderr" else channels.STDOUT
                    await ws.send_bytes(channels.frame(channel, event.data))
                    stream.consumed(len(event.data))
                    continue
                await ws.send_bytes(channels.status_frame(_status_of(event, req)))
                await ws.close()
                return ws
        except ConnectionResetError:
            return ws  # the client went away while we wrote
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            stream.cancel()


async def _client_input(ws: web.WebSocketResponse, stream: RelayedStream, *, v5: bool) -> None:
    """Relay stdin and resizes until the client closes its websocket."""
    async for msg in ws:
        if msg.type != WSMsgType.BINARY:
            continue
        try:
            channel, data = channels.parse_frame(msg.data)
            if channel == channels.STDIN:
                stream.send_input(data)
            elif channel == channels.RESIZE:
                stream.resize(*channels.parse_resize(data))
            elif v5 and channel == channels.CLOSE and data[:1] == bytes((channels.STDIN,)):
                stream.send_input(b"", eof=True)
        except DecodeError as exc:
            log.info("stream %s: bad client message: %s", stream.id[:8], exc)


def _status_of(end: Close, req: LogsRequest | ExecRequest) -> dict[str, Any]:
    if end.error:
        return channels.failure_status(end.error, end.reason or "InternalError")
    command = req.command if isinstance(req, ExecRequest) else None
    return channels.exit_status(end.exit_code or 0, command)


def _refused(end: Close) -> web.HTTPException:
    """The HTTP error for a stream the edge refused before any output."""
    classes: dict[str, type[web.HTTPException]] = {
        "BadRequest": web.HTTPBadRequest,
        "NotFound": web.HTTPNotFound,
        "Unavailable": web.HTTPServiceUnavailable,
    }
    return classes.get(end.reason or "", web.HTTPBadGateway)(text=end.error or "stream failed")


def _wants_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("1", "true", "yes")


def _logs_request(request: web.Request, container: str | None) -> LogsRequest:
    ns, name = request.match_info["namespace"], request.match_info["name"]
    tail_text = request.query.get("tailLines")
    try:
        tail = int(tail_text) if tail_text not in (None, "") else None
    except ValueError:
        raise InvalidObject(f"tailLines must be a number, not {tail_text!r}") from None
    if tail is not None and tail < 0:
        tail = None  # kubectl's --tail=-1: everything
    try:
        return LogsRequest(
            namespace=ns,
            pod=name,
            container=container,
            tail=tail,
            follow=_flag(request, "follow"),
            timestamps=_flag(request, "timestamps"),
            previous=_flag(request, "previous"),
        )
    except ValidationError as exc:
        raise InvalidObject(_first_problem(exc)) from None


def _exec_request(request: web.Request, container: str | None) -> ExecRequest:
    ns, name = request.match_info["namespace"], request.match_info["name"]
    command = request.query.getall("command", [])
    if not command:
        raise InvalidObject("exec needs a command (command=...)")
    try:
        return ExecRequest(
            namespace=ns,
            pod=name,
            container=container,
            command=command,
            tty=_flag(request, "tty"),
            stdin=_flag(request, "stdin") or _flag(request, "input"),
        )
    except ValidationError as exc:
        raise InvalidObject(_first_problem(exc)) from None


def _first_problem(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "request"
    return f"invalid request: {where}: {first['msg']}"


def _plain_error(exc: BridgeError) -> web.Response:
    status = 500
    if isinstance(exc, NotFound):
        status = 404
    elif isinstance(exc, Forbidden):
        status = 403
    elif isinstance(exc, AuthError):
        status = 401
    elif isinstance(exc, InvalidObject):
        status = 400
    if status == 500:
        log.error("kubelet endpoint failed: %s", exc)
    return web.Response(status=status, text=" ".join(str(exc).split()) + "\n")
