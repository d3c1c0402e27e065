"""The one error tree of edgebridge.

::

    BridgeError
    ├── WireError                 a frame or message that cannot be accepted
    │   ├── DecodeError           not JSON, or not the envelope's shape
    │   ├── MessageTooLarge       over the configured size limit
    │   ├── InvalidResource       a resource string (or kind name) that does not parse
    │   ├── InvalidSelector       a label selector that does not parse
    │   ├── UnknownOperation      an operation this side does not handle
    │   └── StreamError           a logs/exec stream broke its protocol (order, window)
    ├── AuthError                 who is asking may not do this
    │   ├── TokenError            join token expired, forged, used up or malformed
    │   ├── IdentityMismatch      node_id header/path disagrees with the certificate
    │   └── Forbidden             a node asked for something not bound to it
    ├── StoreError                the object store refused
    │   ├── NotFound
    │   ├── Conflict              resourceVersion guard failed
    │   ├── Gone                  a watch asked for history that was compacted away
    │   └── InvalidObject         a manifest that is not a valid object
    ├── ConfigError               bad settings or files on disk
    ├── ContainerRuntimeError     the container runtime (CRI) refused or failed a call
    │   ├── RuntimeUnavailable    its socket does not answer
    │   ├── RuntimeNotFound       no such sandbox, container or image
    │   └── RuntimeTimeout        no answer within the deadline
    └── DeviceError               a real device (behind a mapper's driver) failed
        ├── DeviceUnreachable     no answer at all: the device is offline until it answers
        └── PropertyError         the device answered but refused this one property

Third-party errors are wrapped with ``raise ... from`` so the cause stays visible.
Modules never exit the process; only the command-line entry points turn these into exit codes.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Root of every error edgebridge raises on purpose."""


class WireError(BridgeError):
    """A frame or message that cannot be accepted."""


class DecodeError(WireError, ValueError):
    """The bytes are not JSON, or the JSON is not a valid envelope."""


class MessageTooLarge(WireError):
    """The frame is larger than the configured limit."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class InvalidResource(WireError, ValueError):
    """A resource string that does not parse."""


class InvalidSelector(WireError, ValueError):
    """A label selector that does not parse."""


class UnknownOperation(WireError):
    """An operation this side does not handle."""


class StreamError(WireError):
    """A stream message out of order, over its window, or for a stream that is not open."""


class AuthError(BridgeError):
    """The peer may not do this."""


class TokenError(AuthError):
    """A join token that is expired, forged, used up or malformed."""


class IdentityMismatch(AuthError):
    """A claimed node identity disagrees with the client certificate."""


class Forbidden(AuthError):
    """A node asked for, or tried to write, something not bound to it."""


class StoreError(BridgeError):
    """The object store refused an operation."""


class NotFound(StoreError, KeyError):
    """No such object."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "not found"


class Conflict(StoreError):
    """A resourceVersion guard failed: somebody else wrote first."""


class Gone(StoreError):
    """A watch asked to resume from a resourceVersion older than the kept history (HTTP 410)."""


class InvalidObject(StoreError, ValueError):
    """A manifest that is not a valid object."""


class ConfigError(BridgeError):
    """Bad settings, flags or files on disk."""


class ContainerRuntimeError(BridgeError):
    """The container runtime (CRI) refused or failed a call.

    ``code`` is the gRPC status name (``"UNKNOWN"``, ``"NOT_FOUND"``, ...) and ``reason`` the
    runtime's own words, which pod status shows (e.g. why an image pull failed).
    """

    def __init__(self, message: str, *, code: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason or message


class RuntimeUnavailable(ContainerRuntimeError):
    """The runtime's socket does not answer (not started, wrong endpoint, restarting)."""


class RuntimeNotFound(ContainerRuntimeError):
    """No such sandbox, container or image in the runtime."""


class RuntimeTimeout(ContainerRuntimeError):
    """The runtime did not answer within the deadline."""


class DeviceError(BridgeError):
    """A device behind a mapper's driver failed."""


class DeviceUnreachable(DeviceError):
    """The device does not answer (refused, timed out, link gone): it is offline."""


class PropertyError(DeviceError, ValueError):
    """The device answered but this property cannot be read or written (address, type, range)."""
