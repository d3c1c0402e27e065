"""Label selectors: Kubernetes' grammar, parsed once (wire.selectors), matched anywhere."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wire.errors import InvalidSelector
from wire.selectors import Requirement, Selector, parse_selector

LABELS = {"app": "web", "tier": "front", "example.com/zone": "a"}


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("", True),
        ("app=web", True),
        ("app==web", True),
        ("app = web", True),
        ("app=db", False),
        ("app!=db", True),
        ("missing!=x", True),
        ("app", True),
        ("!app", False),
        ("!missing", True),
        ("app in (web, db)", True),
        ("app notin (web)", False),
        ("missing notin (web)", True),
        ("example.com/zone=a,tier in (front)", True),
        ("app=web,tier=back", False),
        ("app=", False),
    ],
)
def test_selector_examples(text: str, matches: bool) -> None:
    """Each operator means what it means in Kubernetes."""
    assert parse_selector(text).matches(LABELS) is matches


@pytest.mark.parametrize(
    "text", ["a b", "a in b", "a in (x", "=x", "a=b=c", "-a=b", "a=(x)", "a in (x y)", ",", "!"]
)
def test_bad_selectors_name_the_selector(text: str) -> None:
    """Text that is not a selector is one error quoting it."""
    with pytest.raises(InvalidSelector, match="invalid label selector"):
        parse_selector(text)


_name = st.from_regex(r"[a-z0-9]([a-z0-9._-]{0,8}[a-z0-9])?", fullmatch=True)
_requirement = st.one_of(
    st.builds(lambda k: Requirement(k, "exists"), _name),
    st.builds(lambda k: Requirement(k, "!"), _name),
    st.builds(lambda k, v: Requirement(k, "=", (v,)), _name, _name),
    st.builds(lambda k, v: Requirement(k, "!=", (v,)), _name, _name),
    st.builds(
        lambda k, vs: Requirement(k, "in", tuple(dict.fromkeys(vs))),
        _name,
        st.lists(_name, min_size=1, max_size=3),
    ),
    st.builds(
        lambda k, vs: Requirement(k, "notin", tuple(dict.fromkeys(vs))),
        _name,
        st.lists(_name, min_size=1, max_size=3),
    ),
)


@given(st.lists(_requirement, max_size=4).map(lambda rs: Selector(tuple(rs))))
def test_printed_selectors_parse_back(selector: Selector) -> None:
    """str() of a selector parses to the same selector."""
    assert parse_selector(str(selector)) == selector


@given(
    st.lists(_requirement, min_size=1, max_size=4),
    st.dictionaries(_name, _name, max_size=4),
)
def test_a_selector_is_the_and_of_its_requirements(
    requirements: list[Requirement], labels: dict[str, str]
) -> None:
    """An object matches a selector exactly when it matches every requirement."""
    selector = Selector(tuple(requirements))
    assert selector.matches(labels) == all(r.matches(labels) for r in requirements)
    for r in requirements:
        negated = {"=": "!=", "!=": "=", "in": "notin", "notin": "in", "exists": "!", "!": "exists"}
        assert Requirement(r.key, negated[r.op], r.values).matches(labels) != r.matches(labels)  # type: ignore[arg-type]
