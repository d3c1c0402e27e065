"""Kubernetes' websocket channel protocol for exec (and our log streams), pure.

``kubectl exec`` (>= 1.30 tries websockets first) and a kubelet talk over one websocket
whose subprotocol is ``v5.channel.k8s.io`` or ``v4.channel.k8s.io``. Every binary message
starts with one byte naming its channel::

    0 stdin    client -> server
    1 stdout   server -> client
    2 stderr   server -> client
    3 error    server -> client: a metav1.Status (JSON) as the last message: the exit code
    4 resize   client -> server: {"Width": W, "Height": H}
    255 close  (v5 only) client -> server: [255, channel]: that channel is done (stdin EOF)

edgectl's ``logs`` and ``exec`` use the same protocol against cloudhub's admin API, so one
client and one server implementation serve both, and the end of a log stream can say why
it ended (node gone) instead of just stopping.
"""

from __future__ import annotations

import json
from typing import Any

from wire.errors import DecodeError

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
#: what a server offers, best first
PROTOCOLS = (V5, V4)

STDIN = 0
STDOUT = 1
STDERR = 2
ERROR = 3
RESIZE = 4
CLOSE = 255

#: exit code a client reports when the status carries none (a failure that is not the
#: command's own exit)
FAILURE_EXIT = 1


def frame(channel: int, data: bytes = b"") -> bytes:
    """One binary websocket message on ``channel``."""
    return bytes((channel,)) + data


def parse_frame(message: bytes) -> tuple[int, bytes]:
    """``(channel, data)`` of one binary message.

    Raises:
        DecodeError: an empty message.
    """
    if not message:
        raise DecodeError("empty channel message")
    return message[0], message[1:]


def success_status() -> dict[str, Any]:
    return {"metadata": {}, "status": "Success"}


def exit_status(exit_code: int, command: list[str] | None = None) -> dict[str, Any]:
    """The Status a kubelet ends an exec with: success, or the command's non-zero exit."""
    if exit_code == 0:
        return success_status()
    shown = " ".join(command or [])
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: error executing command "
        f"[{shown}], exit code {exit_code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(exit_code)}]},
    }


def failure_status(message: str, reason: str = "InternalError") -> dict[str, Any]:
    """A Status for a stream that failed before or without an exit code."""
    return {"metadata": {}, "status": "Failure", "message": message, "reason": reason}


def status_frame(status: dict[str, Any]) -> bytes:
    return frame(ERROR, json.dumps(status, separators=(",", ":")).encode())


def read_status(data: bytes) -> tuple[int, str]:
    """``(exit code, error)`` of a Status from the error channel, as kubectl reads it:
    ``Success`` is ``(0, "")``; ``NonZeroExitCode`` the code in its ``ExitCode`` cause and no
    error (the command ran); any other failure :data:`FAILURE_EXIT` and its message.

    Raises:
        DecodeError: not a JSON Status.
    """
    try:
        status = json.loads(data)
    except ValueError as exc:
        raise DecodeError("error channel carries no JSON status") from exc
    if not isinstance(status, dict):
        raise DecodeError("error channel carries no JSON status")
    if status.get("status") == "Success":
        return 0, ""
    message = str(status.get("message") or "failed")
    if status.get("reason") == "NonZeroExitCode":
        causes = (status.get("details") or {}).get("causes") or []
        for cause in causes:
            if isinstance(cause, dict) and cause.get("reason") == "ExitCode":
                try:
                    return int(str(cause.get("message"))), ""
                except ValueError:
                    break
    return FAILURE_EXIT, message


def parse_resize(data: bytes) -> tuple[int, int]:
    """``(width, height)`` of a resize message.

    Raises:
        DecodeError: not ``{"Width": int, "Height": int}`` within 0..65535.
    """
    try:
        size = json.loads(data)
        width, height = int(size["Width"]), int(size["Height"])
    except (ValueError, TypeError, KeyError) as exc:
        raise DecodeError("resize message is not {Width, Height}") from exc
    if not (0 <= width <= 65535 and 0 <= height <= 65535):
        raise DecodeError("terminal size out of range")
    return width, height


def resize_frame(width: int, height: int) -> bytes:
    return frame(RESIZE, json.dumps({"Width": width, "Height": height}).encode())
