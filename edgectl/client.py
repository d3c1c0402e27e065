"""A small synchronous client for cloudhub's admin API (``/admin/v1/``).

Synchronous on purpose: edgectl makes one or two requests per run, so an event loop would be
ceremony. The standard library's ``urllib`` is enough and keeps start-up fast.

TLS is always verified when the server URL is ``https://``: against the CA file edgectl was
given (cloudhub's ``DATA_DIR/ca.crt``). There is no "insecure" switch: the admin token travels
in every request, and sending it to whoever answers on the port would hand out the fleet.

Failures come back as :mod:`wire.errors` classes carrying the server's one-line reason:
401 -> AuthError, 404 -> NotFound, 409 -> Conflict, 400/413 -> InvalidObject; a server that
cannot be reached or verified -> ConfigError.
"""

from __future__ import annotations

import builtins
import json
import logging
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError
from websockets.exceptions import InvalidHandshake, InvalidStatus
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect
from websockets.typing import Subprotocol

from edgectl.wsconn import TurnTakingConnection
from wire.admin import BOOKMARK_EVERY, VersionInfo, WatchLine
from wire.channels import PROTOCOLS
from wire.errors import AuthError, BridgeError, ConfigError, Conflict, InvalidObject, NotFound

logger = logging.getLogger(__name__)

API_PREFIX = "/admin/v1"
#: Path segment for "no namespace" (cluster-scoped objects).
CLUSTER_NAMESPACE = "_"
#: Seconds to wait for each admin API call.
DEFAULT_TIMEOUT = 30.0
#: Seconds to keep trying a server that refuses connections: a cloudhub started a moment ago
#: (``cloudhub serve &`` then ``edgectl token create``) opens its port within this.
CONNECT_WAIT = 10.0

M = TypeVar("M", bound=BaseModel)


class TokenResponse(BaseModel):
    token: str
    expires_at: str | None = None


class ApplyResponse(BaseModel):
    objects: list[dict[str, Any]]
    actions: list[Literal["created", "configured", "unchanged"]]
    #: accepted, but worth telling (a reference to a node or model that does not exist)
    warnings: list[str] = []


class ObjectList(BaseModel):
    kind: Literal["List"]
    metadata: dict[str, Any] = {}
    items: list[dict[str, Any]]


class AdminClient:
    """Calls the admin API of one cloudhub.

    Args:
        server: base URL, e.g. ``https://127.0.0.1:10002``.
        token: the admin credential (cloudhub's ``admin.token``).
        ca_file: PEM CA to verify the server with; required for ``https://`` URLs.
        timeout: seconds per request.
        connect_wait: seconds to keep retrying while the server refuses connections.
        on_wait: told once, with a one-line reason, when a call starts waiting.

    Raises:
        ConfigError: an https URL without a CA file, or an unreadable CA file.
    """

    def __init__(
        self,
        *,
        server: str,
        token: str,
        ca_file: Path | None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_wait: float = CONNECT_WAIT,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        parsed = urllib.parse.urlsplit(server)
        if parsed.scheme not in ("https", "http") or not parsed.netloc:
            raise ConfigError(f"--server must be an https:// URL, not {server!r}")
        self._server = server.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._connect_wait = connect_wait
        self._on_wait = on_wait
        #: the server answered once: a refusal now means it went away, not that it is starting
        self._reached = False
        self._ssl: ssl.SSLContext | None = None
        if parsed.scheme == "https":
            if ca_file is None:
                raise ConfigError(
                    f"no CA certificate to verify {self._server}: pass --data-dir DIR "
                    "(cloudhub's data dir, which holds ca.crt) or --ca-file FILE"
                )
            try:
                self._ssl = ssl.create_default_context(cafile=str(ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"cannot load CA certificate {ca_file}: {exc}") from exc

    # -- API -----------------------------------------------------------------------------

    def create_token(
        self, ttl_seconds: float, *, uses: int | None = None, node: str | None = None
    ) -> str:
        """A new join token valid for ``ttl_seconds``, for ``uses`` joins (None: any number)
        and only for node ``node`` (None: any name)."""
        body: dict[str, Any] = {"ttl_seconds": ttl_seconds}
        if uses is not None:
            body["uses"] = uses
        if node is not None:
            body["node"] = node
        answer = self._call("POST", "/tokens", body)
        return _model(TokenResponse, answer).token

    def apply(self, objects: list[dict[str, Any]]) -> ApplyResponse:
        """Create or replace ``objects``, all or nothing."""
        return _model(ApplyResponse, self._call("POST", "/apply", {"objects": objects}))

    def list(
        self, plural: str, *, namespace: str | None = None, selector: str = ""
    ) -> list[dict[str, Any]]:
        """Objects of a type (``pods``...), optionally in one namespace, matching a label
        selector (checked by the server)."""
        return self.list_with_version(plural, namespace=namespace, selector=selector)[0]

    def list_with_version(
        self, plural: str, *, namespace: str | None = None, selector: str = ""
    ) -> tuple[builtins.list[dict[str, Any]], str]:
        """:meth:`list` and the list's resourceVersion (to watch from)."""
        query = _query(namespace=namespace, labelSelector=selector)
        answer = _model(ObjectList, self._call("GET", f"/{_segment(plural)}{query}"))
        return answer.items, str(answer.metadata.get("resourceVersion") or "")

    def watch(
        self,
        plural: str,
        *,
        namespace: str | None = None,
        selector: str = "",
        resource_version: str = "",
    ) -> Iterator[WatchLine]:
        """Changes of a type as they happen (see :mod:`wire.admin`), until the server ends the
        stream. Without ``resource_version`` it starts with an ADDED line per object.

        Raises:
            ConfigError: the stream went silent (no line, not even a bookmark, for three
                bookmark intervals) or broke.
        """
        query = _query(
            watch="true",
            namespace=namespace,
            labelSelector=selector,
            resourceVersion=resource_version,
        )
        with self._open("GET", f"/{_segment(plural)}{query}", timeout=3 * BOOKMARK_EVERY) as resp:
            while True:
                try:
                    raw = resp.readline()
                except TimeoutError as exc:
                    raise ConfigError(f"cloudhub at {self._server} stopped answering") from exc
                except OSError as exc:
                    raise _unreachable(self._server, exc) from exc
                if not raw:
                    return
                try:
                    yield WatchLine.model_validate_json(raw)
                except ValidationError as exc:
                    raise BridgeError("unexpected line in cloudhub's watch stream") from exc

    def version(self) -> VersionInfo:
        """What the server says about itself."""
        return _model(VersionInfo, self._call("GET", "/version"))

    def get(self, plural: str, namespace: str | None, name: str) -> dict[str, Any]:
        """One object; ``namespace`` None for cluster-scoped types."""
        return _object(self._call("GET", _object_path(plural, namespace, name)))

    def delete(self, plural: str, namespace: str | None, name: str) -> dict[str, Any]:
        """Delete one object and return its last state."""
        return _object(self._call("DELETE", _object_path(plural, namespace, name)))

    def open_channels(self, path: str, query: Sequence[tuple[str, str]]) -> ClientConnection:
        """A websocket in Kubernetes' channel protocol (:mod:`wire.channels`) to ``path``
        under the admin API: what ``logs`` and ``exec`` read.

        Raises:
            AuthError, NotFound, InvalidObject, BridgeError: cloudhub refused (its one line).
            ConfigError: cloudhub cannot be reached or verified.
        """
        scheme = "wss" if self._ssl is not None else "ws"
        base = self._server.split("://", 1)[1]
        url = f"{scheme}://{base}{API_PREFIX}{path}?{urllib.parse.urlencode(query)}"
        logger.debug("websocket %s", url)
        try:
            return ws_connect(
                url,
                ssl=self._ssl,
                subprotocols=[Subprotocol(p) for p in PROTOCOLS],
                additional_headers={"Authorization": f"Bearer {self._token}"},
                compression=None,
                proxy=None,
                open_timeout=self._timeout,
                ping_interval=None,
                max_size=None,
                create_connection=TurnTakingConnection,
            )
        except InvalidStatus as exc:
            body = exc.response.body or b""
            try:
                detail = json.loads(body).get("error")
            except (ValueError, AttributeError):
                detail = None
            raise _status_error(
                exc.response.status_code, str(detail or body.decode(errors="replace").strip())
            ) from exc
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            raise _unreachable(self._server, exc) from exc

    # -- transport -----------------------------------------------------------------------

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        with self._open(method, path, body) as resp:
            try:
                raw = resp.read()
            except TimeoutError as exc:
                raise ConfigError(f"cloudhub at {self._server} did not answer in time") from exc
            except OSError as exc:
                raise _unreachable(self._server, exc) from exc
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise BridgeError(f"{resp.url} answered something that is not JSON") from exc

    def _open(
        self, method: str, path: str, body: Any = None, *, timeout: float | None = None
    ) -> Any:
        """The open response to a request (a context manager); errors as :mod:`wire.errors`.

        Until the server first answers, while nothing listens on its port (a cloudhub just
        started), retries for ``connect_wait`` seconds, telling ``on_wait`` once."""
        deadline = time.monotonic() + self._connect_wait
        told = False
        while True:
            try:
                resp = self._open_once(method, path, body, timeout=timeout)
            except _Refused as refused:
                if self._reached or time.monotonic() >= deadline:
                    raise refused.error from None
                if not told and self._on_wait is not None:
                    self._on_wait(
                        f"cloudhub at {self._server} refuses connections (not started yet?); "
                        f"waiting up to {self._connect_wait:.0f}s"
                    )
                told = True
                time.sleep(0.2)
            else:
                self._reached = True
                return resp

    def _open_once(self, method: str, path: str, body: Any, *, timeout: float | None) -> Any:
        url = self._server + API_PREFIX + path
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self._token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        logger.debug("%s %s", method, url)
        try:
            return urllib.request.urlopen(
                request, timeout=timeout or self._timeout, context=self._ssl
            )
        except urllib.error.HTTPError as exc:
            raise _error_from(exc) from exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, ConnectionRefusedError):
                raise _Refused(_unreachable(self._server, exc.reason)) from exc
            raise _unreachable(self._server, exc.reason) from exc
        except TimeoutError as exc:
            raise ConfigError(f"cloudhub at {self._server} did not answer in time") from exc
        except OSError as exc:
            raise _unreachable(self._server, exc) from exc


def _query(**params: str | None) -> str:
    """``?a=1&b=2`` of the parameters that are set ("" when none are)."""
    given = {k: v for k, v in params.items() if v}
    return "?" + urllib.parse.urlencode(given) if given else ""


class _Refused(Exception):
    """Nothing listens on the server's port (yet): worth waiting a little."""

    def __init__(self, error: ConfigError) -> None:
        super().__init__(str(error))
        self.error = error


def _segment(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def _object_path(plural: str, namespace: str | None, name: str) -> str:
    ns = namespace or CLUSTER_NAMESPACE
    return f"/{_segment(plural)}/{_segment(ns)}/{_segment(name)}"


def _model(model: type[M], answer: Any) -> M:
    try:
        return model.model_validate(answer)
    except ValidationError as exc:
        raise BridgeError(f"unexpected answer from cloudhub: {exc.errors()[0]['msg']}") from exc


def _object(answer: Any) -> dict[str, Any]:
    if not isinstance(answer, dict):
        raise BridgeError("unexpected answer from cloudhub: not an object")
    return answer


def _error_from(exc: urllib.error.HTTPError) -> BridgeError:
    try:
        detail = json.loads(exc.read()).get("error")
    except (ValueError, AttributeError, OSError):
        detail = None
    message = str(detail) if detail else f"HTTP {exc.code} {exc.reason}"
    return _status_error(exc.code, message)


def _status_error(code: int, message: str) -> BridgeError:
    """The error for cloudhub's answer ``code`` with its one-line ``message``."""
    if code == 401:
        return AuthError(
            f"cloudhub refused the admin token ({message}): use the one in cloudhub's "
            "DATA_DIR/admin.token (--data-dir, --token or EDGECTL_TOKEN)"
        )
    if code == 403:
        return AuthError(message)
    if code == 404:
        return NotFound(message)
    if code == 409:
        return Conflict(message)
    if code in (400, 413, 422):
        return InvalidObject(message)
    if code == 503:  # e.g. the pod's node is offline: the reason says it all
        return BridgeError(message)
    return BridgeError(f"cloudhub failed: {message}")


def _unreachable(server: str, reason: object) -> ConfigError:
    if isinstance(reason, ssl.SSLCertVerificationError):
        return ConfigError(
            f"TLS verification of {server} failed ({reason.verify_message}): is the CA file "
            "(--data-dir/--ca-file) from this cloudhub, and is the host among its "
            "--advertise-address values?"
        )
    if isinstance(reason, ConnectionRefusedError):
        return ConfigError(
            f"cannot reach cloudhub at {server}: connection refused (is it running?)"
        )
    if isinstance(reason, OSError):
        text = reason.strerror or str(reason)
    else:
        text = str(reason)
    return ConfigError(f"cannot reach cloudhub at {server}: {text}")


def wait_for_files(
    data_dir: Path, names: tuple[str, ...], *, timeout: float, on_wait: Callable[[str], None]
) -> None:
    """Wait up to ``timeout`` seconds for ``data_dir`` and the files ``names`` in it, as a
    cloudhub that was just started creates them; tell ``on_wait`` once if it has to wait.
    Returns when they exist or the time is up (the caller reports what is missing)."""
    deadline = time.monotonic() + timeout
    told = False
    while not all((data_dir / name).exists() for name in names):
        if data_dir.exists() and not data_dir.is_dir():
            return
        if time.monotonic() >= deadline:
            return
        if not told:
            on_wait(f"waiting up to {timeout:.0f}s for cloudhub to create {data_dir}/admin.token")
            told = True
        time.sleep(0.1)
