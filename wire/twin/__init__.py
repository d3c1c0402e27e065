"""KubeEdge's device twin, once for every side: versions, the merge, and the MQTT payloads.

The mapper (:mod:`devices`), the edge (:mod:`edgecore.devicetwin`) and the cloud
(:mod:`cloudhub.devicecontroller`) all import this package, so the order that decides which of
two values wins and the shape of every twin message exist exactly once:

- :mod:`wire.twin.merge` — values, versions and the merge rules (a total order, so every side
  converges whatever the order of delivery);
- :mod:`wire.twin.inbound` — what a mapper sends (``$hw/events/device/{id}/twin/update``,
  ``state/update``, ``twin/get``), parsed leniently where it costs nothing;
- :mod:`wire.twin.outbound` — what the edge answers and sends upstream, as models;
- :mod:`wire.twin.builders` — the same outgoing payloads as plain dicts, for the hot path;
- :mod:`wire.twin.upstream` — the edge's report as the cloud reads it, and Device sync;
- :mod:`wire.twin.mapper` — the mapper's side: its report, and the edge's results it reads.

Everything is re-exported here; callers import from :mod:`wire.twin`.
"""

from wire.twin.builders import (
    base_result,
    error_result,
    membership_device,
    membership_result,
    membership_updated,
    state_out,
    twin_delta,
    twin_document,
    twin_json,
    twin_result,
)
from wire.twin.inbound import (
    MAX_REASON,
    BaseIn,
    LenientIn,
    PropertyIn,
    StateUpdateIn,
    Text,
    TwinUpdateIn,
    TypeMetadata,
    ValueIn,
    first_error,
)
from wire.twin.mapper import MaybeValueIn, MsgTwinIn, ResultIn, actual_report
from wire.twin.merge import (
    Twin,
    TwinValue,
    cloud_desired,
    cloud_removed,
    local_desired,
    merge,
    merge_all,
    merge_twin,
    next_hlc,
    reported,
)
from wire.twin.outbound import (
    BaseOut,
    ErrorResult,
    MembershipDevice,
    MembershipResult,
    MembershipUpdated,
    MsgTwin,
    StateOut,
    TwinDelta,
    TwinDoc,
    TwinDocument,
    TwinResult,
    TwinValueOut,
    TwinVersion,
    ValueMetadata,
    dump,
    msg_twin,
)
from wire.twin.upstream import (
    EdgeUpdatedIn,
    PropertyReportIn,
    SideIn,
    StateIn,
    VersionIn,
    in_sync,
    json_side,
)

__all__ = [
    "MAX_REASON",
    "BaseIn",
    "BaseOut",
    "EdgeUpdatedIn",
    "ErrorResult",
    "LenientIn",
    "MaybeValueIn",
    "MembershipDevice",
    "MembershipResult",
    "MembershipUpdated",
    "MsgTwin",
    "MsgTwinIn",
    "PropertyIn",
    "PropertyReportIn",
    "ResultIn",
    "SideIn",
    "StateIn",
    "StateOut",
    "StateUpdateIn",
    "Text",
    "Twin",
    "TwinDelta",
    "TwinDoc",
    "TwinDocument",
    "TwinResult",
    "TwinUpdateIn",
    "TwinValue",
    "TwinValueOut",
    "TwinVersion",
    "TypeMetadata",
    "ValueIn",
    "ValueMetadata",
    "VersionIn",
    "actual_report",
    "base_result",
    "cloud_desired",
    "cloud_removed",
    "dump",
    "error_result",
    "first_error",
    "in_sync",
    "json_side",
    "local_desired",
    "membership_device",
    "membership_result",
    "membership_updated",
    "merge",
    "merge_all",
    "merge_twin",
    "msg_twin",
    "next_hlc",
    "reported",
    "state_out",
    "twin_delta",
    "twin_document",
    "twin_json",
    "twin_result",
]
