"""Where a Kubernetes watch event enters cloudhub: one endless watch of one type, kopf-style.

:func:`watch_kind` is the body of :meth:`cloudhub.store.kubernetes.KubeStore.watch`: an endless
stream built from many watch requests (:meth:`cloudhub.k8s.api.KubeApi.watch`, whose lines
:mod:`cloudhub.k8s.watchlines` parses). Each request asks for bookmarks and a server-side
``timeoutSeconds``; the newest resourceVersion seen (bookmarks included) is kept and the next
request resumes from it when a stream ends; a stream that stays silent for
``inactivity_timeout`` seconds (no event, no bookmark: a half-dead connection) is dropped and
reopened; failures reconnect with jittered, capped backoff. A ``410 Gone`` (when opening or as a
watch ERROR event) raises :class:`~wire.errors.Gone` so the caller re-lists, and that list asks
for ``resourceVersionMatch=NotOlderThan`` the newest version the watch streamed (``floor``: the
API server's watch cache answers it, not etcd). These decisions are :mod:`cloudhub.k8s.resume`'s,
which also says why a restarted cloudhub lists afresh. ResourceVersions are opaque strings:
kept and sent back, never compared.

Each change leaves as a :class:`~cloudhub.store.base.WatchEvent` carrying the server's bytes
(edges get them as they are); a pod marked for deletion leaves as DELETED and is handed to
``terminating`` (:mod:`cloudhub.store.kube_deletion` confirms it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from cloudhub.k8s.api import KubeApi
from cloudhub.k8s.resume import ListFloor, WatchResume
from cloudhub.k8s.watchlines import RawEvent
from cloudhub.store.base import EventType, WatchEvent
from cloudhub.store.kube_kinds import Kind, KubeSettings, complete, terminating
from hive.backoff import backoff
from wire.errors import Gone, InvalidObject, NotFound, StoreError

log = logging.getLogger(__name__)

#: the watch event types that change an object
_EVENT_TYPES: dict[str, EventType] = {
    "ADDED": "ADDED",
    "MODIFIED": "MODIFIED",
    "DELETED": "DELETED",
}


async def watch_kind(
    api: KubeApi,
    kind: Kind,
    type: str,
    since: str,
    *,
    settings: KubeSettings,
    floor: ListFloor,
    closed: Callable[[], bool],
    on_terminating: Callable[[dict[str, Any]], None],
) -> AsyncIterator[WatchEvent]:
    """Changes of ``type`` after ``since`` ("" = from now on) until ``closed()``.

    ``floor`` learns the newest version streamed (the next list asks for at least that);
    ``on_terminating`` gets each pod marked for deletion.

    Raises (while iterating):
        Gone: ``since`` (or a later resourceVersion) fell out of the API server's history.
        NotFound, InvalidObject: the request cannot succeed (e.g. CRD not installed).
    """
    rv = since
    if rv == "":
        listed = await api.list(
            kind.res,
            label_selector=kind.label_selector,
            field_selector=kind.field_selector,
            limit=1,
        )
        rv = str((listed.get("metadata") or {}).get("resourceVersion") or "")
    resume = WatchResume(rv)
    step = resume.start()
    delays = backoff(cap=settings.backoff_cap)
    while not closed():
        if step.action == "relist":  # the caller lists (not older than ``floor``)
            raise Gone(f"watch of {type}: resourceVersion {resume.resource_version} expired")
        if step.backoff:
            await asyncio.sleep(next(delays))
        else:
            delays = backoff(cap=settings.backoff_cap)
        try:
            stream = api.watch(
                kind.res,
                resource_version=step.resource_version,
                timeout_seconds=settings.watch_timeout,
                inactivity_timeout=settings.inactivity_timeout,
                label_selector=kind.label_selector,
                field_selector=kind.field_selector,
            )
            # aclosing: leaving on a 410 ERROR event closes the response now, not at GC.
            async with contextlib.aclosing(stream):
                async for raw in stream:
                    final = _EVENT_TYPES.get(raw.type)
                    if final is not None and isinstance(raw.object, dict):
                        # the common case, a change: no decision to make but where it is
                        resume.saw(_rv_of(raw.object))
                        yield _change(kind, type, final, raw.object, raw, on_terminating)
                        continue
                    stop = resume.event(raw.type, _rv_of(raw.object), code=_code_of(raw))
                    if stop is not None:
                        log.warning("watch of %s: %s", type, _status_text(raw.object))
                        step = stop
                        break
                    event = _event(kind, type, raw, on_terminating)
                    if event is not None:
                        yield event
                else:
                    step = resume.ended()
                    log.debug(
                        "watch of %s ended at resourceVersion %s; resuming",
                        type,
                        step.resource_version,
                    )
        except Gone:
            step = resume.gone()
        except (NotFound, InvalidObject):
            raise
        except StoreError as exc:
            if closed():
                return
            log.warning("watch of %s failed: %s", type, exc)
            step = resume.failed()
        floor.saw(resume.streamed)


def _event(
    kind: Kind, type: str, raw: RawEvent, on_terminating: Callable[[dict[str, Any]], None]
) -> WatchEvent | None:
    """The WatchEvent for one raw watch event, or None for bookmarks and the unknown."""
    event_type: str = raw.type
    obj = raw.object
    if not isinstance(obj, dict):
        log.warning("watch of %s: %s event without an object", type, event_type)
        return None
    if event_type in ("ERROR", "BOOKMARK"):  # ERROR: WatchResume decided what follows
        return None
    final = _EVENT_TYPES.get(event_type)
    if final is None:
        log.warning("watch of %s: unknown event type %r skipped", type, event_type)
        return None
    return _change(kind, type, final, obj, raw, on_terminating)


def _change(
    kind: Kind,
    type: str,
    final: EventType,
    obj: dict[str, Any],
    raw: RawEvent,
    on_terminating: Callable[[dict[str, Any]], None],
) -> WatchEvent:
    """The WatchEvent for a change (``final``) to ``obj``, the decoded ``raw.object``."""
    # The server's bytes go to edges as they are, if they say what the object is (watch
    # events carry kind and apiVersion; if one did not, the completed dict is encoded).
    if "kind" in obj and "apiVersion" in obj:
        body = raw.body
    else:
        body = None
        complete(kind.res, obj)
    if type == "pod" and final != "DELETED" and terminating(obj):
        final = "DELETED"
        body = None
        on_terminating(obj)
    return WatchEvent(final, obj, body, raw.more)


def _rv_of(obj: Any) -> str:
    if not isinstance(obj, dict):
        return ""
    meta = obj.get("metadata")
    rv = meta.get("resourceVersion") if isinstance(meta, dict) else None
    return str(rv) if rv else ""


def _code_of(raw: RawEvent) -> int | None:
    """An ERROR event's status code."""
    if raw.type != "ERROR" or not isinstance(raw.object, dict):
        return None
    code = raw.object.get("code")
    return code if isinstance(code, int) else None


def _status_text(obj: Any) -> str:
    """What a ``kind: Status`` says."""
    if not isinstance(obj, dict):
        return "the API server reported an error"
    code, message = obj.get("code"), obj.get("message") or obj.get("reason") or "error"
    return f"the API server reported {code}: {message}"
