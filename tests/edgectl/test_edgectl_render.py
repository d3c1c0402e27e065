"""How edgectl prints pods (kubectl's READY/STATUS/RESTARTS rules) and jsonpath (pure)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from edgectl.jsonpath import JsonPathError, render
from edgectl.render import pod_columns

NOW = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)


def _pod(status: dict[str, Any] | None, containers: int = 1, **meta: Any) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "metadata": {"name": "p", **meta},
        "spec": {"containers": [{"name": f"c{i}"} for i in range(containers)]},
    }
    if status is not None:
        pod["status"] = status
    return pod


def _cs(state: dict[str, Any], *, ready: bool = False, restarts: int = 0) -> dict[str, Any]:
    return {"name": "c", "ready": ready, "restartCount": restarts, "state": state}


RUNNING = {"running": {"startedAt": "2024-05-01T11:00:00Z"}}


@pytest.mark.parametrize(
    ("pod", "expected"),
    [
        (_pod(None), ("0/1", "Pending", "0")),
        (_pod({"phase": "Pending"}, containers=2), ("0/2", "Pending", "0")),
        (
            _pod({"phase": "Running", "containerStatuses": [_cs(RUNNING, ready=True)]}),
            ("1/1", "Running", "0"),
        ),
        (
            _pod({"phase": "Running", "containerStatuses": [_cs(RUNNING, ready=False)]}),
            ("0/1", "Running", "0"),
        ),
        (
            _pod(
                {
                    "phase": "Pending",
                    "containerStatuses": [_cs({"waiting": {"reason": "ImagePullBackOff"}})],
                }
            ),
            ("0/1", "ImagePullBackOff", "0"),
        ),
        (
            _pod(
                {
                    "phase": "Running",
                    "containerStatuses": [_cs({"terminated": {"exitCode": 137, "signal": 9}})],
                }
            ),
            ("0/1", "Signal:9", "0"),
        ),
        (
            _pod({"phase": "Failed", "containerStatuses": [_cs({"terminated": {"exitCode": 3}})]}),
            ("0/1", "ExitCode:3", "0"),
        ),
        (
            _pod(
                {
                    "phase": "Succeeded",
                    "containerStatuses": [
                        _cs({"terminated": {"exitCode": 0, "reason": "Completed"}})
                    ],
                }
            ),
            ("0/1", "Completed", "0"),
        ),
        (
            _pod(
                {
                    "phase": "Running",
                    "conditions": [{"type": "Ready", "status": "False"}],
                    "containerStatuses": [
                        _cs(RUNNING, ready=True, restarts=1),
                        _cs({"terminated": {"exitCode": 0, "reason": "Completed"}}, restarts=2),
                    ],
                },
                containers=2,
            ),
            ("1/2", "NotReady", "3"),
        ),
        (
            _pod(
                {"phase": "Running", "containerStatuses": [_cs(RUNNING, ready=True)]},
                deletionTimestamp="2024-05-01T11:59:00Z",
            ),
            ("1/1", "Terminating", "0"),
        ),
        (
            _pod(
                {
                    "phase": "Pending",
                    "initContainerStatuses": [_cs({"waiting": {"reason": "PodInitializing"}})],
                }
            ),
            ("0/1", "Init:0/0", "0"),
        ),
        (
            _pod(
                {
                    "phase": "Pending",
                    "initContainerStatuses": [
                        _cs({"terminated": {"exitCode": 1, "reason": "Error"}})
                    ],
                }
            ),
            ("0/1", "Init:Error", "0"),
        ),
        (_pod({"phase": "Failed", "reason": "Evicted"}), ("0/1", "Evicted", "0")),
    ],
)
def test_pod_columns_as_kubectl(pod: dict[str, Any], expected: tuple[str, str, str]) -> None:
    """READY, STATUS and RESTARTS follow kubectl's printer."""
    assert pod_columns(pod, NOW) == expected


def test_restarts_show_the_last_restart_age() -> None:
    """RESTARTS carries '(age ago)' of the newest lastState.terminated.finishedAt."""
    cs = _cs(RUNNING, ready=True, restarts=4)
    cs["lastState"] = {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:55:00Z"}}
    assert (
        pod_columns(_pod({"phase": "Running", "containerStatuses": [cs]}), NOW)[2] == "4 (5m ago)"
    )


DOC = {
    "kind": "List",
    "items": [
        {"metadata": {"name": "a", "labels": {"app.kubernetes.io/name": "x"}}, "n": 1},
        {
            "metadata": {"name": "b"},
            "n": 2,
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        },
    ],
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{.kind}", "List"),
        ("{$.kind}", "List"),
        ("{.items[*].metadata.name}", "a b"),
        ("{.items[0].metadata.name}", "a"),
        ("{.items[-1].n}", "2"),
        ("{.items[0:1].metadata.name}", "a"),
        ("{.items[?(@.n>1)].metadata.name}", "b"),
        ("{.items[?(@.status)].metadata.name}", "b"),
        ("{.items[*].status.conditions[?(@.type=='Ready')].status}", "True"),
        ("{.items[0].metadata.labels['app.kubernetes.io/name']}", "x"),
        ("{..name}", "a b"),
        ('{range .items[*]}{.metadata.name}:{.n}{"\\n"}{end}', "a:1\nb:2\n"),
        ("name={.items[1].metadata}", 'name={"name": "b"}'),
        ("{.missing}", ""),
        ("plain text", "plain text"),
        ("{'it\\'s'}", "it's"),
        ('{"say \\"hi\\""}', 'say "hi"'),
        ("{'a\\tb'}", "a\tb"),
    ],
)
def test_jsonpath_templates(template: str, expected: str) -> None:
    """kubectl's JSONPath templates fill as kubectl fills them."""
    assert render(template, DOC) == expected


@pytest.mark.parametrize("template", ["{.items[", "{range .items[*]}{.a}", "{end}", "{.a b}", "{"])
def test_bad_jsonpath_templates(template: str) -> None:
    """A template that does not parse is one JsonPathError."""
    with pytest.raises(JsonPathError):
        render(template, DOC)
