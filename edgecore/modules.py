"""The edge modules' names and bus groups, spelled once (as KubeEdge's ``modules.go``).

A module sends to another by its *name* (``bus.send(EDGEHUB, msg)``) and tells a kind of
module by its *group* (``bus.modules(TWIN_GROUP)``); the app registers every module here on the
bus with :data:`REGISTRY`. This module imports nothing, so every edge module may import it
without importing another module.
"""

from __future__ import annotations

from typing import Final

# -- module names (bus addresses, and ``route.source`` of what a module sends) ----------------

EDGEHUB: Final = "edgehub"
METAMANAGER: Final = "metamanager"
CERTMANAGER: Final = "certmanager"
EVENTBUS: Final = "eventbus"
TWIN: Final = "twin"
NODESTATUS: Final = "nodestatus"
EDGED: Final = "edged"
EDGESTREAM: Final = "edgestream"
DMI: Final = "dmi"

# -- bus groups ---------------------------------------------------------------------------------

HUB_GROUP: Final = "hub"
META_GROUP: Final = "meta"
CERTMANAGER_GROUP: Final = "certmanager"
BUS_GROUP: Final = "bus"
TWIN_GROUP: Final = "twin"
#: nodestatus reports what edged would (KubeEdge's edged posts the node status)
EDGED_GROUP: Final = "edged"
EDGESTREAM_GROUP: Final = "edgestream"
DMI_GROUP: Final = "dmi"

#: (name, group) of every module that receives bus messages; the app registers them all,
#: whether or not the module runs (edged under ``--runtime none``)
REGISTRY: Final[tuple[tuple[str, str], ...]] = (
    (EDGEHUB, HUB_GROUP),
    (METAMANAGER, META_GROUP),
    (CERTMANAGER, CERTMANAGER_GROUP),
    (EVENTBUS, BUS_GROUP),
    (TWIN, TWIN_GROUP),
    (NODESTATUS, EDGED_GROUP),
    (EDGED, EDGED_GROUP),
    (EDGESTREAM, EDGESTREAM_GROUP),
)

#: groups edgehub tells when the cloud link comes up or goes down (twin resends its durable
#: outbox, certmanager renews only while connected, edged resends pod status, edgestream ends
#: the streams of the lost link)
NOTIFY_GROUPS: Final = (TWIN_GROUP, CERTMANAGER_GROUP, EDGED_GROUP, EDGESTREAM_GROUP)
