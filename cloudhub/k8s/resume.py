"""When a watch resumes, when it backs off, when the type is re-listed, and from where: pure.

Decisions only: :class:`WatchResume` is fed what one watch of one type saw (events with their
resourceVersions, the stream's end, a failure, a ``410 Gone``) and answers what to do next
(:class:`Next`); :class:`ListFloor` says how the next list of the type is asked for. No
I/O and no clock: :func:`cloudhub.store.kube_watch.watch_kind` pumps the requests, and the
tests feed these machines sequences of events and errors.

The rules, as client-go's reflector and kopf keep them:

- **Resume, do not re-list.** Watches ask for bookmarks, so the newest resourceVersion seen
  (an event's or a bookmark's) stays recent even for a type that does not change. A stream
  that ends (the server's ``timeoutSeconds``, an idle socket, an API server restart, a
  network error) is reopened from it: nothing is listed again and followers see no
  difference.
- **Back off when nothing moved.** A stream that failed, or ended without a single line, is
  reopened after a jittered, capped delay (so a refusing server is not hammered); one that
  delivered is reopened at once.
- **Re-list on 410 Gone** (when opening, or as an ERROR event with code 410): the version
  fell out of the API server's history, so changes were missed and only a list tells the
  truth, deletions included.
- **Re-list from the watch cache.** That list asks for ``resourceVersion=<newest streamed>`` with
  ``resourceVersionMatch=NotOlderThan``: the API server answers from its watch cache instead
  of a quorum read from etcd, and never with a state older than what cloudhub (and its
  edges) already saw. If the server refuses it (a version it does not know, an old server),
  the next list is a plain consistent read.

**Not kept across a cloudhub restart.** A restarted cloudhub holds nothing: its followers
(the edgecontroller's binding index, the fleet view) need every object, not the changes
since a version, so a restart lists in any case; a watch from a stored version would tell
it what changed but not what stayed. Storing the version for the restart's list floor alone
buys little (one list per type from the watch cache instead of etcd) and risks a 3 s stall
and a failed list on a version from another cluster or a restored etcd. So the first list
is a consistent read, and edges still receive only what changed: what is sent to an edge is
the difference between that list and what the edge holds (the inventory our edgecore states
on connect; for a stock edge, the record of what it last ACKed, :mod:`cloudhub.k8s.acked`),
deletions it missed included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: the API's list option for "at least as new as resourceVersion"
NOT_OLDER_THAN = "NotOlderThan"


@dataclass(frozen=True, slots=True)
class Next:
    """What the watch of a type does next."""

    #: ``watch``: open a watch from :attr:`resource_version`; ``relist``: list the type again
    action: Literal["watch", "relist"]
    #: where the watch resumes (for ``relist``: the newest version seen, the list's floor)
    resource_version: str
    #: wait a backoff delay first (the last attempt failed or delivered nothing)
    backoff: bool = False


class WatchResume:
    """One watch of one type, from ``since`` on: where it stands and what it does next."""

    def __init__(self, since: str) -> None:
        #: the newest resourceVersion seen (events and bookmarks), where a watch resumes
        self.resource_version = since
        #: the newest version the stream itself sent ("" before the first): a version of the
        #: type's watch cache, unlike ``since`` if that is a list's (see :class:`ListFloor`)
        self.streamed = ""
        #: the open stream delivered at least one line
        self._progressed = False

    def start(self) -> Next:
        return Next("watch", self.resource_version)

    def event(self, type: str, resource_version: str, *, code: int | None = None) -> Next | None:
        """One line of the open stream; None: deliver it (if it is a change) and read on.

        ``code``: an ERROR event's status code (its object is a ``kind: Status``).
        """
        if type == "ERROR":
            self._progressed = True
            return self.gone() if code == 410 else self.failed()
        self.saw(resource_version)
        return None

    def saw(self, resource_version: str) -> None:
        """A line that is not an ERROR (a change, a bookmark): :meth:`event`'s common case."""
        self._progressed = True
        if resource_version:
            self.resource_version = self.streamed = resource_version

    def ended(self) -> Next:
        """The stream ended without an error (server timeout, idle socket, closed)."""
        progressed, self._progressed = self._progressed, False
        return Next("watch", self.resource_version, backoff=not progressed)

    def failed(self) -> Next:
        """Opening or reading the stream failed (network, 5xx, an ERROR event)."""
        self._progressed = False
        return Next("watch", self.resource_version, backoff=True)

    def gone(self) -> Next:
        """410 Gone: the version is out of the server's history; re-list not older than what
        the stream sent (nothing yet: a consistent read)."""
        self._progressed = False
        return Next("relist", self.streamed)


@dataclass(frozen=True, slots=True)
class ListRequest:
    """How to ask for a list: ``resourceVersion`` and ``resourceVersionMatch`` ("" = omit)."""

    resource_version: str = ""
    match: str = ""


class ListFloor:
    """The freshness floor of a type's next list: the newest version its watch streams sent.

    Only versions from a stream (events, bookmarks) qualify: a list's own version is etcd's
    current revision, which can be ahead of the type's watch cache (it moves only with that
    type's changes), and a NotOlderThan list from it stalls 3 s and fails ("504 Too large
    resource version", seen on v1.20.2).
    """

    def __init__(self) -> None:
        self._floor = ""

    def saw(self, resource_version: str) -> None:
        """A watch of the type stands at ``resource_version``."""
        if resource_version:
            self._floor = resource_version

    def request(self) -> ListRequest:
        """The next list: not older than the floor, else (none yet) a consistent read."""
        if self._floor:
            return ListRequest(self._floor, NOT_OLDER_THAN)
        return ListRequest()

    def failed(self, request: ListRequest) -> None:
        """``request`` failed: the next list is a consistent read (always answerable)."""
        if request.resource_version and request.resource_version == self._floor:
            self._floor = ""
