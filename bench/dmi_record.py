"""A recording DMI proxy: sits on both sockets between edgecore and a stock mapper.

The mapper is pointed at ``edge_side`` (its ``edgecore_sock``); every call is forwarded as raw
bytes to edgecore's socket, and the ``MapperRegister`` request has its ``mapper.address``
rewritten to ``mapper_side``, so edgecore's calls to the mapper pass through here too. Each
call is recorded (wall time, direction, method, request and answer decoded with our ``.proto``,
and whether either carried fields our ``.proto`` does not know): what a real mapper sends, in
which order, with which fields set, and what edgecore answered.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format, unknown_fields
from google.protobuf import wrappers_pb2 as _wrappers  # noqa: F401  (Any's types, for the JSON)
from google.protobuf.message import Message as ProtoMessage

from edgecore.dmi import api_pb2 as dmi

log = logging.getLogger(__name__)

#: a restarted peer is dialled again within 0.2 s (gRPC's default back-off grows to minutes;
#: a stock mapper gives MapperRegister one second)
_FAST_RECONNECT = [
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 200),
]
_MANAGER = "/v1beta1.DeviceManagerService/"
_MAPPER = "/v1beta1.DeviceMapperService/"

#: method -> (request type, response type)
TYPES: dict[str, tuple[type[ProtoMessage], type[ProtoMessage]]] = {
    _MANAGER + "MapperRegister": (dmi.MapperRegisterRequest, dmi.MapperRegisterResponse),
    _MANAGER + "ReportDeviceStatus": (
        dmi.ReportDeviceStatusRequest,
        dmi.ReportDeviceStatusResponse,
    ),
    _MANAGER + "ReportDeviceStates": (
        dmi.ReportDeviceStatesRequest,
        dmi.ReportDeviceStatesResponse,
    ),
    _MAPPER + "RegisterDevice": (dmi.RegisterDeviceRequest, dmi.RegisterDeviceResponse),
    _MAPPER + "UpdateDevice": (dmi.UpdateDeviceRequest, dmi.UpdateDeviceResponse),
    _MAPPER + "RemoveDevice": (dmi.RemoveDeviceRequest, dmi.RemoveDeviceResponse),
    _MAPPER + "CreateDeviceModel": (dmi.CreateDeviceModelRequest, dmi.CreateDeviceModelResponse),
    _MAPPER + "UpdateDeviceModel": (dmi.UpdateDeviceModelRequest, dmi.UpdateDeviceModelResponse),
    _MAPPER + "RemoveDeviceModel": (dmi.RemoveDeviceModelRequest, dmi.RemoveDeviceModelResponse),
    _MAPPER + "GetDevice": (dmi.GetDeviceRequest, dmi.GetDeviceResponse),
}


@dataclass
class Call:
    """One call through the proxy."""

    at: float
    #: ``mapper->edge`` or ``edge->mapper``
    direction: str
    method: str
    request: dict[str, Any]
    answer: dict[str, Any] | None
    error: str | None
    #: either message carried fields our ``.proto`` does not declare
    unknown_fields: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "at": round(self.at, 6),
            "direction": self.direction,
            "method": self.method.rsplit("/", 1)[-1],
            "request": self.request,
            "answer": self.answer,
            "error": self.error,
            "unknown_fields": self.unknown_fields,
        }


def _has_unknown(msg: ProtoMessage) -> bool:
    if len(unknown_fields.UnknownFieldSet(msg)):
        return True
    for fd, value in msg.ListFields():
        if fd.message_type is None:
            continue
        if fd.message_type.GetOptions().map_entry:
            values = list(value.values())
        elif isinstance(value, ProtoMessage):
            values = [value]
        else:
            values = list(value)
        if any(isinstance(v, ProtoMessage) and _has_unknown(v) for v in values):
            return True
    return False


def _decode(kind: type[ProtoMessage], raw: bytes) -> tuple[dict[str, Any], bool]:
    msg = kind()
    try:
        msg.ParseFromString(raw)
        return json_format.MessageToDict(msg), _has_unknown(msg)
    except Exception as exc:  # a recording must not break the call it records
        return {"undecodable": f"{type(exc).__name__}: {exc}"}, True


@dataclass
class Recorder:
    """Both proxy servers and the calls seen so far."""

    edge_socket: Path
    edge_side: Path
    mapper_side: Path
    calls: list[Call] = field(default_factory=list)
    #: the mapper's own socket, from its ``MapperRegister``
    mapper_socket: str = ""
    on_call: Callable[[Call], None] | None = None
    _servers: list[grpc.aio.Server] = field(default_factory=list)
    _to_edge: grpc.aio.Channel | None = None
    _to_mapper: grpc.aio.Channel | None = None

    async def start(self) -> None:
        self._to_edge = grpc.aio.insecure_channel(
            f"unix://{self.edge_socket}", options=_FAST_RECONNECT
        )
        for path, handler in (
            (self.edge_side, self._to_edge_call),
            (self.mapper_side, self._to_mapper_call),
        ):
            server = grpc.aio.server()
            server.add_generic_rpc_handlers((_Generic(handler),))
            server.add_insecure_port(f"unix://{path}")
            await server.start()
            self._servers.append(server)

    async def stop(self) -> None:
        for server in self._servers:
            await server.stop(grace=0.2)
        for ch in (self._to_edge, self._to_mapper):
            if ch is not None:
                await ch.close()

    def save(self, path: Path) -> None:
        path.write_text(json.dumps([c.as_json() for c in self.calls], indent=1) + "\n")

    async def _to_edge_call(self, method: str, raw: bytes) -> bytes:
        if method == _MANAGER + "MapperRegister":
            req = dmi.MapperRegisterRequest()
            req.ParseFromString(raw)
            self.mapper_socket = bytes(req.mapper.address).decode()
            if self._to_mapper is not None:
                await self._to_mapper.close()
            self._to_mapper = grpc.aio.insecure_channel(
                f"unix://{self.mapper_socket}", options=_FAST_RECONNECT
            )
            forwarded = dmi.MapperRegisterRequest()
            forwarded.CopyFrom(req)
            forwarded.mapper.address = str(self.mapper_side).encode()
            return await self._forward(
                "mapper->edge", self._to_edge, method, raw, forwarded.SerializeToString()
            )
        return await self._forward("mapper->edge", self._to_edge, method, raw, raw)

    async def _to_mapper_call(self, method: str, raw: bytes) -> bytes:
        return await self._forward("edge->mapper", self._to_mapper, method, raw, raw)

    async def _forward(
        self,
        direction: str,
        channel: grpc.aio.Channel | None,
        method: str,
        raw: bytes,
        sent: bytes,
    ) -> bytes:
        at = time.time()
        kinds = TYPES.get(method)
        request, unknown = _decode(kinds[0], raw) if kinds else ({"raw_bytes": len(raw)}, True)
        answer_raw: bytes | None = None
        error: str | None = None
        try:
            if channel is None:
                raise grpc.aio.AioRpcError(
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.aio.Metadata(),
                    grpc.aio.Metadata(),
                    details="the mapper has not registered yet",
                )
            # wait_for_ready: after an edgecore restart the channel may be in its back-off
            answer_raw = await channel.unary_unary(method)(sent, timeout=10, wait_for_ready=True)
        except grpc.aio.AioRpcError as exc:
            error = f"{exc.code().name}: {exc.details()}"
            raise
        finally:
            answer: dict[str, Any] | None = None
            if answer_raw is not None and kinds:
                answer, more = _decode(kinds[1], answer_raw)
                unknown = unknown or more
            call = Call(at, direction, method, request, answer, error, unknown)
            self.calls.append(call)
            if self.on_call is not None:
                self.on_call(call)
        return answer_raw


class _Generic(grpc.GenericRpcHandler):  # type: ignore[misc]  # grpc is untyped
    """Every unary method, as raw bytes, to ``handle(method, request)``."""

    def __init__(self, handle: Callable[[str, bytes], Awaitable[bytes]]) -> None:
        self._handle = handle

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method = str(details.method)

        async def unary(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            try:
                return await self._handle(method, request)
            except grpc.aio.AioRpcError as exc:
                await context.abort(exc.code(), exc.details() or "")
                raise

        return grpc.unary_unary_rpc_method_handler(unary)
