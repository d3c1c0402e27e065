"""DMI's gRPC face: the ``DeviceManagerService`` server and the channels to mappers.

Everything that needs ``grpc`` is here, and :mod:`edgecore.dmi.module` imports this only when
a mapper first connects (or one registered before the last restart is dialled again): gRPC
(cygrpc, its threads) is ~15 MiB of an edge's resident memory, which an edge serving DMI to
no mapper does not need (``bench/edge_footprint.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from edgecore.dmi import api_pb2 as dmi
from edgecore.dmi import api_pb2_grpc as dmi_grpc
from edgecore.dmi.convert import states_request, status_request

if TYPE_CHECKING:
    from edgecore.dmi.module import DmiModule

#: the generated stubs are untyped
_grpc: Any = dmi_grpc


async def serve(module: DmiModule, path: Path) -> grpc.aio.Server:
    """Serve ``module`` as ``DeviceManagerService`` on the unix socket ``path``.

    Bound beside it, then renamed over it: a client connecting meanwhile reaches the old
    listener at ``path`` or the new one, never nothing.

    Raises:
        RuntimeError: gRPC cannot bind the socket.
        OSError: the rename failed.
    """
    server = grpc.aio.server()
    _grpc.add_DeviceManagerServiceServicer_to_server(_Manager(module), server)
    staged = path.with_name(path.name + ".grpc")
    staged.unlink(missing_ok=True)
    server.add_insecure_port(f"unix://{staged}")
    await server.start()
    try:
        staged.replace(path)
    except OSError:
        await server.stop(0)
        raise
    return server


def connect(address: str) -> tuple[grpc.aio.Channel, Any]:
    """A channel to the mapper at ``address`` (a socket path or a gRPC target) and its
    ``DeviceMapperService`` stub."""
    target = address if "://" in address else f"unix://{address}"
    channel = grpc.aio.insecure_channel(target)
    return channel, _grpc.DeviceMapperServiceStub(channel)


def call_failed(exc: BaseException) -> str | None:
    """What went wrong when ``exc`` is a failed call to a mapper; ``None`` otherwise."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return str(exc.details() or exc.code())
    return None


class _Manager(dmi_grpc.DeviceManagerServiceServicer):
    """gRPC face of :class:`~edgecore.dmi.module.DmiModule`."""

    def __init__(self, module: DmiModule) -> None:
        self._module = module

    async def MapperRegister(
        self, request: dmi.MapperRegisterRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> dmi.MapperRegisterResponse:
        if not request.mapper.protocol:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "mapper.protocol is empty")
        return await self._module.register(request)

    async def ReportDeviceStatus(
        self, request: dmi.ReportDeviceStatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> dmi.ReportDeviceStatusResponse:
        await self._report(request, context, status_request)
        return dmi.ReportDeviceStatusResponse()

    async def ReportDeviceStates(
        self, request: dmi.ReportDeviceStatesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> dmi.ReportDeviceStatesResponse:
        await self._report(request, context, states_request)
        return dmi.ReportDeviceStatesResponse()

    async def _report(
        self,
        request: Any,
        context: grpc.aio.ServicerContext[Any, Any],
        convert: Callable[[Any, int], tuple[str, str]],
    ) -> None:
        name = request.deviceName
        ns = self._module.namespace_of(name, request.deviceNamespace)
        if ns is None:
            await _not_found(context, name, request.deviceNamespace)
            return
        request.deviceNamespace = ns
        outcome = await self._module.report(
            name, ns, convert(request, int(time.time() * 1000)), context.time_remaining()
        )
        if outcome == "not_found":
            await _not_found(context, name, ns)
        elif outcome == "busy":
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"device {ns}/{name}: its mapper reports more than dmi.rate allows; "
                "report less often or raise dmi.rate",
            )


async def _not_found(context: grpc.aio.ServicerContext[Any, Any], name: str, ns: str) -> None:
    await context.abort(
        grpc.StatusCode.NOT_FOUND, f"device {ns or 'default'}/{name} is not bound to this node"
    )
