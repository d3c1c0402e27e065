"""OPC UA, through asyncua's client.

``spec.protocol.configData`` is KubeEdge's: ``url`` (``opc.tcp://host:4840/path``), optional
``username``/``password`` (``userName`` too; a ``password`` that names a readable file is read
from it, as KubeEdge's OPC UA mapper does) and ``securityPolicy``/``securityMode`` (``None``
by default; any other policy needs ``certificate`` and ``privateKey`` files for the client).
Visitors: ``{nodeID: "ns=2;i=2"}`` (or ``nodeId``/``nodeid``).

Writes use the node's own variant type (read once per node), so a FLOAT property writes a
``Float`` node and a DOUBLE property a ``Double`` node without asking the manifest to say so.

Errors: a status code about the node (unknown node, wrong type, not writable) is a
:class:`~wire.errors.PropertyError`; a closed session or channel, a timeout or a refused
connection is :class:`~wire.errors.DeviceUnreachable`. asyncua's own reconnect is off: the
mapper reconnects with back-off and marks the device offline meanwhile.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Final

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.ua.status_codes import get_name_and_doc
from asyncua.ua.uaerrors import UaError, UaStatusCodeError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from devices.config import DeviceConfig, Visitor
from devices.values import Value, coerce
from wire.errors import ConfigError, DeviceUnreachable, PropertyError

#: seconds a request may take, at most and at least, whatever the collect cycle
MAX_TIMEOUT = 4.0
MIN_TIMEOUT = 0.5

#: status codes that mean the server or the session is gone, not that one node is wrong
_LINK_CODES: Final = frozenset(
    {
        "BadSessionIdInvalid",
        "BadSessionClosed",
        "BadSessionNotActivated",
        "BadSecureChannelClosed",
        "BadSecureChannelIdInvalid",
        "BadConnectionClosed",
        "BadTimeout",
        "BadCommunicationError",
        "BadServerNotConnected",
        "BadServerHalted",
        "BadShutdown",
        "BadNotConnected",
        "BadDisconnect",
    }
)


class OpcUaProtocol(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    url: str = Field(pattern=r"^opc\.tcp://.+")
    username: str | None = None
    password: str | None = None
    security_policy: str = Field(default="None", alias="securityPolicy")
    security_mode: str = Field(default="None", alias="securityMode")
    certificate: str | None = None
    private_key: str | None = Field(default=None, alias="privateKey")

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        if isinstance(data, dict) and "username" not in data and "userName" in data:
            return {**data, "username": data["userName"]}
        return data

    @model_validator(mode="after")
    def _security(self) -> OpcUaProtocol:
        secure = self.security_policy not in ("", "None")
        if secure and not (self.certificate and self.private_key):
            raise ValueError(
                f"securityPolicy {self.security_policy} needs certificate and privateKey files"
            )
        if secure and self.security_mode not in ("Sign", "SignAndEncrypt"):
            raise ValueError("securityMode must be Sign or SignAndEncrypt with a securityPolicy")
        return self

    @property
    def secure(self) -> bool:
        return self.security_policy not in ("", "None")


class OpcUaVisitor(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    node_id: str = Field(min_length=1, alias="nodeID")

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        if isinstance(data, dict) and "nodeID" not in data:
            for key in ("nodeId", "nodeid", "node_id"):
                if key in data:
                    return {**data, "nodeID": data[key]}
        return data


def _first(exc: ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{where}: {msg}" if where else msg


def _secret(value: str | None) -> str | None:
    """A password given inline, or the content of the file it names (KubeEdge's convention)."""
    if value and value.startswith("/"):
        path = Path(value)
        if path.is_file():
            return path.read_text().strip()
    return value


class OpcUaDriver:
    """An OPC UA server, one session per device.

    Raises:
        ConfigError: bad protocol or visitor configData, or a malformed nodeID.
    """

    def __init__(self, device: DeviceConfig) -> None:
        where = f"device {device.key}"
        try:
            self._proto = OpcUaProtocol.model_validate(dict(device.protocol_config))
        except ValidationError as exc:
            raise ConfigError(f"{where}: protocol configData: {_first(exc)}") from exc
        self._node_ids: dict[str, ua.NodeId] = {}
        for v in device.properties:
            try:
                raw = OpcUaVisitor.model_validate(dict(v.config)).node_id
            except ValidationError as exc:
                raise ConfigError(f"{where}: property {v.name}: {_first(exc)}") from exc
            try:
                self._node_ids[v.name] = ua.NodeId.from_string(raw)
            except (ValueError, UaError) as exc:
                raise ConfigError(f"{where}: property {v.name}: bad nodeID {raw!r}") from exc
        self._timeout = min(MAX_TIMEOUT, max(MIN_TIMEOUT, device.collect_cycle))
        self._client: Client | None = None
        self._nodes: dict[str, Node] = {}
        self._variant_types: dict[str, ua.VariantType] = {}

    async def connect(self) -> None:
        """Open a session (with the configured user and security)."""
        await self.close()
        p = self._proto
        client = Client(p.url, timeout=self._timeout)
        if p.username:
            client.set_user(p.username)
        password = _secret(p.password)
        if password:
            client.set_password(password)
        try:
            if p.secure:
                await client.set_security_string(
                    f"{p.security_policy},{p.security_mode},{p.certificate},{p.private_key}"
                )
            await client.connect()
        except (OSError, TimeoutError, UaError) as exc:
            raise DeviceUnreachable(f"opcua {p.url}: {exc or type(exc).__name__}") from exc
        self._client = client

    async def close(self) -> None:
        """End the session; a dead server is not an error here."""
        client, self._client = self._client, None
        self._nodes.clear()
        self._variant_types.clear()
        if client is not None:
            try:
                await asyncio.wait_for(client.disconnect(), self._timeout)
            except Exception:  # the server may already be gone; the socket is closed anyway
                client.disconnect_socket()

    def _node(self, visitor: Visitor) -> Node:
        if self._client is None:
            raise DeviceUnreachable(f"opcua {self._proto.url}: not connected")
        node = self._nodes.get(visitor.name)
        if node is None:
            node_id = self._node_ids.get(visitor.name)
            if node_id is None:
                raise PropertyError(f"property {visitor.name} has no OPC UA visitor")
            node = self._client.get_node(node_id)
            self._nodes[visitor.name] = node
        return node

    def _failed(self, exc: Exception, what: str) -> Exception:
        if isinstance(exc, UaStatusCodeError):
            name = _code_name(exc.code)
            if name not in _LINK_CODES:
                return PropertyError(f"{what}: {name}")
        return DeviceUnreachable(f"opcua {self._proto.url}: {exc or type(exc).__name__}")

    async def read(self, visitor: Visitor) -> Value:
        """The node's value, as the property's type."""
        node = self._node(visitor)
        try:
            raw = await node.read_value()
        except (OSError, TimeoutError, ConnectionError, UaError) as exc:
            raise self._failed(exc, f"node {node.nodeid.to_string()}") from exc
        if isinstance(raw, bool | int | float | str):
            return coerce(visitor.type, raw)
        raise PropertyError(f"node {node.nodeid.to_string()} holds a {type(raw).__name__}")

    async def write(self, visitor: Visitor, value: Value) -> None:
        """Write ``value`` as the node's own variant type."""
        node = self._node(visitor)
        what = f"node {node.nodeid.to_string()}"
        try:
            vtype = self._variant_types.get(visitor.name)
            if vtype is None:
                vtype = await node.read_data_type_as_variant_type()
                self._variant_types[visitor.name] = vtype
            native = _native(value, vtype)
            await node.write_value(ua.DataValue(ua.Variant(native, vtype)))
        except (OSError, TimeoutError, ConnectionError, UaError) as exc:
            raise self._failed(exc, what) from exc


_INTS: Final = {
    ua.VariantType.SByte: (-(2**7), 2**7 - 1),
    ua.VariantType.Byte: (0, 2**8 - 1),
    ua.VariantType.Int16: (-(2**15), 2**15 - 1),
    ua.VariantType.UInt16: (0, 2**16 - 1),
    ua.VariantType.Int32: (-(2**31), 2**31 - 1),
    ua.VariantType.UInt32: (0, 2**32 - 1),
    ua.VariantType.Int64: (-(2**63), 2**63 - 1),
    ua.VariantType.UInt64: (0, 2**64 - 1),
}


def _native(value: Value, vtype: ua.VariantType) -> Any:
    """``value`` as the Python type asyncua writes for ``vtype``; refuses what does not fit."""
    if vtype in _INTS:
        if isinstance(value, str):
            raise PropertyError(f"{value!r} is not an integer")
        whole = round(value)
        low, high = _INTS[vtype]
        if whole != value or not low <= whole <= high:
            raise PropertyError(f"{value} does not fit a {vtype.name} node ({low}..{high})")
        return whole
    if vtype in (ua.VariantType.Float, ua.VariantType.Double):
        if isinstance(value, str):
            raise PropertyError(f"{value!r} is not a number")
        return float(value)
    if vtype == ua.VariantType.Boolean:
        return bool(value)
    if vtype == ua.VariantType.String:
        return str(value)
    raise PropertyError(f"nodes of type {vtype.name} are not writable by the mapper")


def _code_name(code: int) -> str:
    try:
        return str(get_name_and_doc(code)[0])
    except Exception:  # an unknown code still deserves a readable line
        return f"0x{code:08X}"
