"""Manifests in, validated Kubernetes-shaped objects out. Pure: no files, no clock.

Users hand edgebridge the same YAML/JSON they would hand ``kubectl`` or KubeEdge: several
documents per file, ``kind: List`` wrappers, extra fields from newer API versions. Both the
admin API (before it writes anything) and ``edgectl`` (before it sends anything) run the same
checks from here, so a bad manifest is refused with the same one-line reason on both sides and
nothing is half-applied.

The checks are the ones that would otherwise surface far away and late (an edge that cannot
start a pod without an image, a secret whose data is not base64, a name no Kubernetes API would
accept). Everything else is left alone: the pydantic models allow extra fields, and
:func:`validate` returns a normalised *copy of the input*, not a model dump, so fields this
module does not know about survive untouched. Device and DeviceModel are deliberately lenient
beyond their few required fields, so KubeEdge's own example manifests pass.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from wire.errors import InvalidObject
from wire.kinds import BY_KIND

#: DeviceModel property types KubeEdge v1beta1 defines.
PROPERTY_TYPES = ("INT", "FLOAT", "DOUBLE", "STRING", "BOOLEAN", "BYTES", "STREAM")

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DATA_KEY = re.compile(r"[-._a-zA-Z0-9]+")


def is_dns1123_subdomain(value: str) -> bool:
    """Whether ``value`` is a valid object name (RFC 1123 subdomain, at most 253 characters)."""
    return len(value) <= 253 and _DNS_SUBDOMAIN.fullmatch(value) is not None


def is_dns1123_label(value: str) -> bool:
    """Whether ``value`` is a valid namespace or container name (RFC 1123 label, <= 63)."""
    return len(value) <= 63 and _DNS_LABEL.fullmatch(value) is not None


# --------------------------------------------------------------------------- parsing


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps timestamps as strings.

    Plain PyYAML turns ``creationTimestamp: 2024-01-01T00:00:00Z`` into a ``datetime``, which
    is not JSON and would not round-trip; Kubernetes treats it as a string.
    """


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _display(source: str) -> str:
    return "stdin" if source == "-" else source


def _raw_documents(text: str, where: str) -> list[Any]:
    """Every document in ``text`` (``None`` for empty ones), JSON tried first when it looks so."""
    json_error: json.JSONDecodeError | None = None
    if text.lstrip().startswith(("{", "[")):
        try:
            return [json.loads(text)]
        except RecursionError as exc:
            raise InvalidObject(f"{where}: nested too deeply") from exc
        except json.JSONDecodeError as exc:
            # YAML flow style also starts with "{"; let the YAML parser have a go.
            json_error = exc
    docs: list[Any] = []
    try:
        # Lazily, so a syntax error is pinned to the document it is in.
        for doc in yaml.load_all(text, Loader=_Loader):  # a SafeLoader: no arbitrary objects
            docs.append(doc)
    except RecursionError as exc:
        raise InvalidObject(f"{where} document {len(docs) + 1}: nested too deeply") from exc
    except yaml.YAMLError as exc:
        if json_error is not None:
            raise InvalidObject(
                f"{where}: invalid JSON at line {json_error.lineno} column {json_error.colno}: "
                f"{json_error.msg}"
            ) from json_error
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        at = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        raise InvalidObject(
            f"{where} document {len(docs) + 1}: invalid YAML{at}: {problem}"
        ) from exc
    return docs


@dataclass(frozen=True, slots=True)
class _Located:
    label: str
    obj: dict[str, Any]


def _located(text: str, source: str) -> Iterator[_Located]:
    where = _display(source)
    for number, doc in enumerate(_raw_documents(text, where), start=1):
        if doc is None:
            continue
        label = f"{where} document {number}"
        if not isinstance(doc, dict):
            raise InvalidObject(f"{label}: expected a mapping, got {_type_name(doc)}")
        kind = doc.get("kind")
        if not isinstance(kind, str) or not kind:
            raise InvalidObject(f"{label}: {_kind_problem(kind)}")
        if kind == "List" or (kind.endswith("List") and "items" in doc):
            items = doc.get("items")
            if items is None:
                continue
            if not isinstance(items, list):
                raise InvalidObject(f"{label}: items must be a list, got {_type_name(items)}")
            for index, item in enumerate(items, start=1):
                item_label = f"{label} item {index}"
                if not isinstance(item, dict):
                    raise InvalidObject(f"{item_label}: expected a mapping, got {_type_name(item)}")
                item_kind = item.get("kind")
                if not isinstance(item_kind, str) or not item_kind:
                    raise InvalidObject(f"{item_label}: {_kind_problem(item_kind)}")
                yield _Located(item_label, item)
        else:
            yield _Located(label, doc)


def parse_documents(text: str, *, source: str = "-") -> list[dict[str, Any]]:
    """Split YAML or JSON text into objects.

    Several YAML documents (``---``) are allowed; empty ones are skipped. A ``kind: List``
    (or ``PodList``...) contributes its ``items``. Objects are not validated here beyond being
    mappings with a ``kind``: call :func:`validate_all` (or use :func:`load`).

    Args:
        text: the file's content.
        source: the file name, for messages (``-`` reads as ``stdin``).

    Raises:
        InvalidObject: one line naming the document, e.g. ``pod.yaml document 2: ...``.
    """
    return [located.obj for located in _located(text, source)]


def load(text: str, *, source: str = "-") -> list[dict[str, Any]]:
    """:func:`parse_documents` then :func:`validate` each, all before returning anything.

    Raises:
        InvalidObject: ``pod.yaml document 2: Pod default/x: spec.containers: ...``.
    """
    out: list[dict[str, Any]] = []
    for located in _located(text, source):
        try:
            out.append(validate(located.obj))
        except InvalidObject as exc:
            raise InvalidObject(f"{located.label}: {exc}") from exc
    return out


# --------------------------------------------------------------------------- schemas


class _Lenient(BaseModel):
    """Unknown fields are allowed (and ignored); types are checked without coercion.

    Ignored rather than kept (``extra="allow"``): the model only checks an object and is
    thrown away, and keeping a pod's unknown fields copied all of them, a quarter of the
    check's time.
    """

    model_config = ConfigDict(extra="ignore", strict=True)


def _check_data_keys(value: dict[str, str] | None) -> dict[str, str] | None:
    for key in value or {}:
        if len(key) > 253 or not _DATA_KEY.fullmatch(key):
            raise ValueError(
                f"key {key!r} must consist of letters, digits, '-', '_' or '.' (at most 253)"
            )
    return value


def _check_base64(value: dict[str, str] | None) -> dict[str, str] | None:
    for key, data in (value or {}).items():
        try:
            base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"value of {key!r} is not valid base64") from exc
    return value


class ObjectMeta(_Lenient):
    name: str
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not is_dns1123_subdomain(value):
            raise ValueError(
                f"{value!r} is not a valid name: lowercase letters, digits, '-' and '.', "
                "starting and ending with a letter or digit, at most 253 characters"
            )
        return value

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str | None) -> str | None:
        if value and not is_dns1123_label(value):
            raise ValueError(
                f"{value!r} is not a valid namespace: lowercase letters, digits and '-', "
                "starting and ending with a letter or digit, at most 63 characters"
            )
        return value


class Container(_Lenient):
    name: str
    image: str

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not is_dns1123_label(value):
            raise ValueError(f"{value!r} is not a valid container name (RFC 1123 label)")
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value


class PodSpec(_Lenient):
    containers: list[Container]
    initContainers: list[Container] | None = None
    nodeName: str | None = None

    @field_validator("containers")
    @classmethod
    def _containers(cls, value: list[Container]) -> list[Container]:
        if not value:
            raise ValueError("must list at least one container")
        return value


class LocalObjectReference(_Lenient):
    name: str

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be empty")
        return value


class DeviceSpec(_Lenient):
    deviceModelRef: LocalObjectReference
    nodeName: str | None = None


class ModelProperty(_Lenient):
    name: str
    type: Literal["INT", "FLOAT", "DOUBLE", "STRING", "BOOLEAN", "BYTES", "STREAM"]


class DeviceModelSpec(_Lenient):
    properties: list[ModelProperty] | None = None


class NodeObject(_Lenient):
    metadata: ObjectMeta


class MetadataOnly(_Lenient):
    """An object of any kind whose other fields are known to be valid (see :func:`validate`)."""

    metadata: ObjectMeta


class PodObject(_Lenient):
    metadata: ObjectMeta
    spec: PodSpec


class ConfigMapObject(_Lenient):
    metadata: ObjectMeta
    data: dict[str, str] | None = None
    binaryData: dict[str, str] | None = None

    _keys = field_validator("data", "binaryData")(_check_data_keys)
    _binary = field_validator("binaryData")(_check_base64)


class SecretObject(_Lenient):
    metadata: ObjectMeta
    data: dict[str, str] | None = None
    stringData: dict[str, str] | None = None

    _keys = field_validator("data", "stringData")(_check_data_keys)
    _data = field_validator("data")(_check_base64)


class DeviceObject(_Lenient):
    metadata: ObjectMeta
    spec: DeviceSpec


class DeviceModelObject(_Lenient):
    metadata: ObjectMeta
    spec: DeviceModelSpec | None = None


@dataclass(frozen=True, slots=True)
class _Schema:
    api_version: str
    model: type[_Lenient]
    namespaced: bool
    #: the same checks minus ``spec``'s, for a spec already found valid (see :func:`validate`)
    model_without_spec: type[_Lenient] | None = None


def _schema(
    kind: str, model: type[_Lenient], without_spec: type[_Lenient] | None = None
) -> tuple[str, _Schema]:
    """``kind``'s checks, with its apiVersion and scope from :data:`wire.kinds.KINDS`."""
    api = BY_KIND[kind]
    return kind, _Schema(api.api_version, model, api.namespaced, without_spec)


_SCHEMAS: dict[str, _Schema] = dict(
    [
        _schema("Node", NodeObject),
        _schema("Pod", PodObject, MetadataOnly),
        _schema("ConfigMap", ConfigMapObject),
        _schema("Secret", SecretObject),
        _schema("Device", DeviceObject, MetadataOnly),
        _schema("DeviceModel", DeviceModelObject, MetadataOnly),
    ]
)

#: The kinds :func:`validate` accepts, in the order messages list them.
KINDS: tuple[str, ...] = tuple(_SCHEMAS)


# --------------------------------------------------------------------------- validation


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, str):
        return "string"
    return type(value).__name__


def _kind_problem(kind: Any) -> str:
    if kind is None or kind == "":
        return "kind is missing"
    return f"kind must be a string, got {_type_name(kind)}"


def _identity(kind: str, obj: dict[str, Any], namespaced: bool) -> str:
    """``Pod default/x`` / ``Node edge-1``: how messages name the object."""
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    name = meta.get("name")
    shown = name if isinstance(name, str) and name else "<unnamed>"
    if not namespaced:
        return f"{kind} {shown}"
    ns = meta.get("namespace")
    return f"{kind} {ns if isinstance(ns, str) and ns else 'default'}/{shown}"


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _describe(exc: ValidationError) -> str:
    """The first problem of a pydantic error as ``path: reason``."""
    first = exc.errors(include_url=False)[0]
    where = _location(tuple(first["loc"])) or "object"
    if first["type"] == "missing":
        return f"{where} is required"
    msg = str(first["msg"])
    if first["type"] == "value_error":
        msg = msg.removeprefix("Value error, ")
    return f"{where}: {msg}"


def validate(obj: Any, *, owned: bool = False, spec_valid: bool = False) -> dict[str, Any]:
    """Check one object and return a normalised copy.

    The copy has ``metadata.namespace`` defaulted to ``default`` for namespaced kinds and
    removed for Node, and a Secret's ``stringData`` folded into base64 ``data`` (as the
    Kubernetes API server does). All other fields, known or not, are kept as given.

    Args:
        owned: the caller hands ``obj`` over (it was just parsed from a request body and
            nothing else holds it): it is normalised in place and returned, not copied. The
            copy was the largest part of validating a big apply.
        spec_valid: ``obj["spec"]`` is equal to a spec this function accepted before (the
            stored version's, in an update that leaves the spec alone): it is not checked
            again. About half of checking a pod is its spec.

    Raises:
        InvalidObject: one line such as ``Pod default/x: spec.containers: ...``.
    """
    if not isinstance(obj, dict):
        raise InvalidObject(f"expected an object (a mapping), got {_type_name(obj)}")
    kind = obj.get("kind")
    if not isinstance(kind, str) or not kind:
        raise InvalidObject(_kind_problem(kind))
    schema = _SCHEMAS.get(kind)
    if schema is None:
        raise InvalidObject(f"kind {kind!r} is not supported (expected one of {', '.join(KINDS)})")
    api_version = obj.get("apiVersion")
    if api_version != schema.api_version:
        got = "missing" if api_version is None else repr(api_version)
        ident = _identity(kind, obj, schema.namespaced)
        raise InvalidObject(f"{ident}: apiVersion must be {schema.api_version!r}, got {got}")
    model = schema.model
    if spec_valid and schema.model_without_spec is not None and "spec" in obj:
        model = schema.model_without_spec
    try:
        model.model_validate(obj)
        out: dict[str, Any] = obj if owned else copy_json(obj)
    except ValidationError as exc:
        raise InvalidObject(f"{_identity(kind, obj, schema.namespaced)}: {_describe(exc)}") from exc
    except RecursionError as exc:
        # Only hand-built dicts get here (the parsers refuse such nesting first).
        ident = _identity(kind, obj, schema.namespaced)
        raise InvalidObject(f"{ident}: nested too deeply") from exc

    meta: dict[str, Any] = out["metadata"]
    if schema.namespaced:
        meta["namespace"] = meta.get("namespace") or "default"
    else:
        meta.pop("namespace", None)
    if kind == "Secret" and "stringData" in out:
        string_data: dict[str, str] = out.pop("stringData") or {}
        data: dict[str, str] = dict(out.get("data") or {})
        for key, value in string_data.items():
            # stringData wins over data for the same key, as in Kubernetes.
            data[key] = base64.b64encode(value.encode()).decode("ascii")
        out["data"] = data
    return out


def validate_all(objs: Iterable[Any], *, owned: bool = False) -> list[dict[str, Any]]:
    """:func:`validate` every object; raise on the first bad one before returning any.

    ``owned``: as for :func:`validate`; objects before the bad one may then have been
    normalised already.

    Raises:
        InvalidObject: the first invalid object's reason.
    """
    return [validate(obj, owned=owned) for obj in objs]


def copy_json(value: Any) -> Any:
    """A deep copy of JSON-shaped data (dicts, lists, strings, numbers, booleans, null).

    Several times faster than ``copy.deepcopy``, which keeps a memo of every object it copies
    for the shared references and cycles JSON cannot have. Anything else met on the way (a set
    or an object in a hand-built dict) is deep-copied the general way, so it still reaches the
    store's JSON check and is refused there as before. A cycle ends in ``RecursionError``.
    """
    kind = type(value)
    if kind is dict:
        return {k: copy_json(v) for k, v in value.items()}
    if kind is list:
        return [copy_json(v) for v in value]
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    return copy.deepcopy(value)
