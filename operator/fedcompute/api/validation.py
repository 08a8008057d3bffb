"""Offline validation of fedcompute manifests (ComputeProvider, RegionPool, AcceleratorModel).

The rules are not restated here: each document is checked against the CRD schema that
:mod:`fedcompute.api.crds` generates from the models, in the order kube-apiserver uses:
unknown fields (strict field validation), pruning of nulls and defaulting, the OpenAPI
value checks, list-map/set uniqueness, then the CRD's own CEL rules evaluated with celpy
(plus the Kubernetes quantity functions they call), skipped like the apiserver skips them
when a blocking error was found. Finally the
defaulted object is parsed with the pydantic model. Field paths are printed the way
kube-apiserver prints them, so CI output and ``kubectl`` errors read the same.

Pure functions only; reading files is left to :func:`validate_paths` and the CLI.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import celpy
import pydantic
import yaml
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

from fedcompute import quantities
from fedcompute.api import API_VERSION, GROUP, crds
from fedcompute.api.common import DNS_SUBDOMAIN_PATTERN

# --- errors ----------------------------------------------------------------------------


class ErrorType(StrEnum):
    """Kinds of error, named as kube-apiserver names them (k8s.io/apimachinery field errors)."""

    UNKNOWN = "Unknown field"
    REQUIRED = "Required value"
    INVALID = "Invalid value"
    TYPE_INVALID = "Invalid type"
    UNSUPPORTED = "Unsupported value"
    TOO_LONG = "Too long"
    TOO_MANY = "Too many"
    DUPLICATE = "Duplicate value"


# Errors after which kube-apiserver does not evaluate CEL rules (hasBlockingErr).
BLOCKING: Final = frozenset(
    {
        ErrorType.REQUIRED,
        ErrorType.TYPE_INVALID,
        ErrorType.UNSUPPORTED,
        ErrorType.TOO_LONG,
        ErrorType.TOO_MANY,
    }
)
RULES_NOT_CHECKED: Final = (
    "some validation rules were not checked because the object was invalid; "
    "correct the existing errors to complete validation"
)


@dataclass(frozen=True)
class FieldError:
    """One problem, at a field path such as ``spec.source.static.accelerators[0].count``.

    ``path`` is empty for problems with the object as a whole.
    """

    path: str
    type: ErrorType
    detail: str

    def __str__(self) -> str:
        label = "Invalid value" if self.type is ErrorType.TYPE_INVALID else self.type.value
        text = f"{self.path or '<object>'}: {label}"
        return f"{text}: {self.detail}" if self.detail else text

    def to_dict(self) -> dict[str, str]:
        """JSON-ready form for ``-o json``."""
        return {"field": self.path, "type": self.type.name.lower(), "message": self.detail}


# --- paths -----------------------------------------------------------------------------

Segment = tuple[str, str | int]  # ("field", name) | ("index", i) | ("key", map key)


def render_path(segments: Sequence[Segment], *, cel: bool = False) -> str:
    """Render a path like kube-apiserver: ``a.b[0].c``; map keys as ``.k`` or ``[k]`` in CEL."""
    out = ""
    for kind, value in segments:
        if kind == "index" or (kind == "key" and cel):
            out += f"[{value}]"
        else:
            out += f".{value}" if out else str(value)
    return out


# The JSON decoder of kube-apiserver keeps an integer only when it fits in an int64; any
# other number becomes a float64, which counts as an integer only up to 2^53-1
# (go-openapi's IsFloat64AJSONInteger).
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
_FLOAT_INTEGER_MAX: Final = 2**53 - 1


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer" if INT64_MIN <= value <= INT64_MAX else "number"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def _is_integer(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return INT64_MIN <= value <= INT64_MAX
    return isinstance(value, float) and value.is_integer() and abs(value) <= _FLOAT_INTEGER_MAX


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _has_type(value: Any, expected: str) -> bool:
    if expected == "string":
        return isinstance(value, str)
    if expected == "integer":
        return _is_integer(value)
    if expected == "number":
        return _is_number(value)
    if expected == "boolean":
        return isinstance(value, bool)
    if expected == "object":
        return isinstance(value, Mapping)
    if expected == "array":
        return isinstance(value, list)
    return False  # pragma: no cover - the generator emits no other type


def _quote(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if _is_number(value):
        return str(value)
    return f'"{_type_name(value)}"'


# --- pass 1: unknown fields ------------------------------------------------------------

# The fields of metav1.ObjectMeta; anything else under metadata is unknown to the apiserver.
OBJECT_META_FIELDS: Final = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)


def _unknown_fields(
    value: Any, schema: Mapping[str, Any], path: tuple[Segment, ...]
) -> Iterator[tuple[Segment, ...]]:
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(value, Mapping) and "properties" in schema:
        properties = schema["properties"]
        for key in value:
            child = (*path, ("field", str(key)))
            if key not in properties:
                yield child
            else:
                yield from _unknown_fields(value[key], properties[key], child)
    elif isinstance(value, Mapping) and isinstance(schema.get("additionalProperties"), Mapping):
        for key, item in value.items():
            yield from _unknown_fields(item, schema["additionalProperties"], (*path, ("key", key)))
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            yield from _unknown_fields(item, schema["items"], (*path, ("index", i)))


def unknown_field_errors(
    document: Mapping[str, Any], schema: Mapping[str, Any]
) -> list[FieldError]:
    """Fields the schema does not declare (what strict field validation rejects)."""
    body = {k: v for k, v in document.items() if k != "metadata"}
    paths = list(_unknown_fields(body, schema, ()))
    metadata = document.get("metadata")
    if isinstance(metadata, Mapping):
        paths += [
            (("field", "metadata"), ("field", str(k)))
            for k in metadata
            if k not in OBJECT_META_FIELDS
        ]
    errors = []
    for segments in paths:
        name = render_path(segments)
        errors.append(FieldError(name, ErrorType.UNKNOWN, "field not declared in schema"))
    return sorted(errors, key=lambda e: e.path)


# --- pass 2: pruning nulls and defaulting ----------------------------------------------


def apply_defaults(value: Any, schema: Mapping[str, Any]) -> Any:
    """Drop null properties and fill in defaults, top-down, as the apiserver does."""
    if isinstance(value, dict):
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        for key in [k for k, v in value.items() if v is None]:
            del value[key]
        if isinstance(properties, Mapping):
            for key, sub in properties.items():
                if key not in value and "default" in sub:
                    value[key] = copy.deepcopy(sub["default"])
                if key in value:
                    value[key] = apply_defaults(value[key], sub)
        elif isinstance(additional, Mapping):
            for key in list(value):
                value[key] = apply_defaults(value[key], additional)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [apply_defaults(item, schema["items"]) for item in value]
    return value


# --- pass 3: OpenAPI value validation --------------------------------------------------

_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def go_regex(pattern: str) -> str:
    """``pattern`` for Python's re with Go's meaning of ``$``: the end of the text only.

    Python's ``$`` also matches before a final newline, so ``8\\n`` would pass a pattern
    the apiserver refuses it with. (CEL's ``matches()`` runs on RE2 in celpy already.)
    """
    out: list[str] = []
    i, in_class = 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            out.append(char)
            i += 1
            for literal in ("^", "]"):  # "[^" and a leading "]" do not close the class
                if pattern[i : i + 1] == literal:
                    out.append(literal)
                    i += 1
            continue
        elif char == "$":
            char = r"\Z"
        out.append(char)
        i += 1
    return "".join(out)


@functools.lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(go_regex(pattern))


def _valid_format(value: str, fmt: str) -> bool:
    if fmt == "date-time":
        if _DATE_TIME.match(value) is None:
            return False
        try:
            datetime.fromisoformat(value.replace("z", "Z").replace("t", "T"))
        except ValueError:
            return False
    return True


def _schema_errors(
    value: Any, schema: Mapping[str, Any], path: tuple[Segment, ...]
) -> Iterator[FieldError]:
    name = render_path(path)
    where = name or "body"

    def invalid(detail: str) -> FieldError:
        return FieldError(name, ErrorType.INVALID, f"{_quote(value)}: {where} in body {detail}")

    int_or_string = bool(schema.get("x-kubernetes-int-or-string"))
    expected = schema.get("type")
    if int_or_string:
        if not (isinstance(value, str) or _is_integer(value)):
            yield FieldError(
                name,
                ErrorType.TYPE_INVALID,
                f'"{_type_name(value)}": {where} in body must be of type integer,string: '
                f'"{_type_name(value)}"',
            )
            return
    elif expected is not None and not _has_type(value, expected):
        yield FieldError(
            name,
            ErrorType.TYPE_INVALID,
            f'"{_type_name(value)}": {where} in body must be of type {expected}: '
            f'"{_type_name(value)}"',
        )
        return

    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(_quote(v) for v in schema["enum"])
        yield FieldError(
            name, ErrorType.UNSUPPORTED, f"{_quote(value)}: supported values: {supported}"
        )

    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            yield FieldError(
                name, ErrorType.TOO_LONG, f"may not be more than {schema['maxLength']} bytes"
            )
        if "minLength" in schema and len(value) < schema["minLength"]:
            yield invalid(f"should be at least {schema['minLength']} chars long")
        if "pattern" in schema and _regex(schema["pattern"]).search(value) is None:
            yield invalid(f"should match '{schema['pattern']}'")
        if "format" in schema and not _valid_format(value, schema["format"]):
            yield invalid(f"must be of type {schema['format']}")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            yield invalid(f"should be greater than or equal to {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            yield invalid(f"should be less than or equal to {schema['maximum']}")
    elif isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            yield FieldError(
                name,
                ErrorType.TOO_MANY,
                f"{len(value)}: must have at most {schema['maxItems']} items",
            )
        if "minItems" in schema and len(value) < schema["minItems"]:
            yield FieldError(
                name,
                ErrorType.INVALID,
                f"{len(value)}: {where} in body should have at least {schema['minItems']} items",
            )
        item_schema = schema.get("items", {})
        for i, item in enumerate(value):
            yield from _schema_errors(item, item_schema, (*path, ("index", i)))
        yield from _list_type_errors(value, schema, path)
    elif isinstance(value, Mapping):
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            yield FieldError(
                name,
                ErrorType.TOO_MANY,
                f"{len(value)}: must have at most {schema['maxProperties']} items",
            )
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            yield FieldError(
                name,
                ErrorType.INVALID,
                f"{len(value)}: {where} in body should have at least "
                f"{schema['minProperties']} properties",
            )
        for required in schema.get("required", []):
            if required not in value:
                yield FieldError(render_path((*path, ("field", required))), ErrorType.REQUIRED, "")
        properties = schema.get("properties", {})
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            if key in properties:
                yield from _schema_errors(item, properties[key], (*path, ("field", key)))
            elif isinstance(additional, Mapping):
                yield from _schema_errors(item, additional, (*path, ("key", key)))


def _list_type_errors(
    value: list[Any], schema: Mapping[str, Any], path: tuple[Segment, ...]
) -> Iterator[FieldError]:
    list_type = schema.get("x-kubernetes-list-type")
    seen: list[Any] = []
    for i, item in enumerate(value):
        if list_type == "set":
            identity: Any = item
            shown = _quote(item)
        elif list_type == "map" and isinstance(item, Mapping):
            keys = schema.get("x-kubernetes-list-map-keys", [])
            identity = tuple(item.get(k) for k in keys)
            inner = ",".join(f'"{k}":{_quote(item.get(k))}' for k in sorted(keys))
            shown = "{" + inner + "}"
        else:
            continue
        if identity in seen:
            yield FieldError(render_path((*path, ("index", i))), ErrorType.DUPLICATE, shown)
        else:
            seen.append(identity)


def schema_errors(document: Mapping[str, Any], schema: Mapping[str, Any]) -> list[FieldError]:
    """OpenAPI value errors of an already defaulted document, in document order."""
    return list(_schema_errors(document, schema, ()))


# --- pass 4: CEL rules -----------------------------------------------------------------


class CelQuantity:
    """A CEL value of Kubernetes' type ``kubernetes.Quantity``, as ``quantity()`` returns."""

    __slots__ = ("value",)

    def __init__(self, value: Decimal) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CelQuantity) and self.value == other.value

    def __hash__(self) -> int:
        return hash(self.value)

    def __repr__(self) -> str:
        return f"quantity({self.value})"


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"no such overload for {type(value).__name__}")
    return str(value)


def _quantity_of(value: Any) -> Decimal:
    if not isinstance(value, CelQuantity):
        raise TypeError(f"no such overload for {type(value).__name__}")
    return value.value


def _cel_quantity(value: Any) -> CelQuantity | CELEvalError:
    try:
        return CelQuantity(quantities.parse_kubernetes(_text(value)))
    except quantities.QuantityError as exc:
        return CELEvalError(str(exc), quantities.QuantityError, exc.args)


def _cel_is_quantity(value: Any) -> celtypes.BoolType:
    try:
        quantities.parse_kubernetes(_text(value))
    except quantities.QuantityError:
        return celtypes.BoolType(False)
    return celtypes.BoolType(True)


def _compare(a: Any, b: Any) -> int:
    x, y = _quantity_of(a), _quantity_of(b)
    return (x > y) - (x < y)


# The part of Kubernetes' CEL quantity library (k8s.io/apiserver/pkg/cel/library) that the
# CRD rules use, on fedcompute.quantities.parse_kubernetes: same grammar, same rounding,
# same cap for binary suffixes, so validate and the apiserver agree value for value.
# celpy calls f(x, y) and x.f(y) alike; the apiserver declares these as written in the
# rules: quantity() and isQuantity() as functions, the comparisons as methods.
CEL_FUNCTIONS: Final[dict[str, Any]] = {
    "quantity": _cel_quantity,
    "isQuantity": _cel_is_quantity,
    "compareTo": lambda a, b: celtypes.IntType(_compare(a, b)),
    "isLessThan": lambda a, b: celtypes.BoolType(_compare(a, b) < 0),
    "isGreaterThan": lambda a, b: celtypes.BoolType(_compare(a, b) > 0),
}


@functools.lru_cache(maxsize=1)
def _cel_environment() -> celpy.Environment:
    """Built on first use: constructing the CEL parser costs more than the whole CLI start."""
    return celpy.Environment()


@functools.lru_cache(maxsize=256)
def _program(expression: str) -> Any:
    env = _cel_environment()
    return env.program(env.compile(expression), functions=CEL_FUNCTIONS)


def evaluate_rule(expression: str, value: Any) -> bool:
    """Evaluate one CEL rule with ``self`` bound to ``value``; raise on evaluation errors."""
    result = _program(expression).evaluate({"self": json_to_cel(value)})
    if isinstance(result, Exception):
        raise result
    return bool(result)


def _cel_failure(exc: Exception) -> str:
    """A one-line description of a CEL evaluation error (celpy nests the cause in args)."""
    texts: list[str] = []

    def walk(item: Any) -> None:
        if isinstance(item, BaseException):
            for arg in item.args:
                walk(arg)
        elif isinstance(item, tuple | list):
            for arg in item:
                walk(arg)
        elif isinstance(item, str):
            texts.append(item)

    walk(exc)
    noise = ("<class", "CELEvalError", "overload", "overflow")
    useful = [t for t in texts if not any(n in t for n in noise)]
    return f"evaluation error ({useful[-1]})" if useful else "evaluation error"


def _field_path_segments(field_path: str) -> tuple[Segment, ...]:
    return tuple(("field", part) for part in field_path.strip(".").split(".") if part)


def _cel_errors(
    value: Any, schema: Mapping[str, Any], path: tuple[Segment, ...]
) -> Iterator[FieldError]:
    # The apiserver names the schema's type, which int-or-string nodes leave empty.
    type_name = str(schema.get("type", ""))
    for entry in schema.get("x-kubernetes-validations", []):
        try:
            ok = evaluate_rule(entry["rule"], value)
        except Exception as exc:  # celpy raises its own error types for missing keys etc.
            # Like the apiserver: an evaluation error is reported on the node itself, not
            # on the rule's fieldPath.
            yield FieldError(
                render_path(path, cel=True),
                ErrorType.INVALID,
                f'"{type_name}": {_cel_failure(exc)} evaluating rule: {entry["message"]}',
            )
            continue
        if not ok:
            target = (*path, *_field_path_segments(entry.get("fieldPath", "")))
            yield FieldError(
                render_path(target, cel=True),
                ErrorType.INVALID,
                f'"{type_name}": {entry["message"]}',
            )
    if isinstance(value, Mapping):
        properties = schema.get("properties", {})
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            if key in properties:
                yield from _cel_errors(item, properties[key], (*path, ("field", key)))
            elif isinstance(additional, Mapping):
                yield from _cel_errors(item, additional, (*path, ("key", key)))
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            yield from _cel_errors(item, schema["items"], (*path, ("index", i)))


def cel_errors(document: Mapping[str, Any], schema: Mapping[str, Any]) -> list[FieldError]:
    """Failures of the CRD's CEL rules; ``self.metadata`` holds only name and generateName."""
    metadata = document.get("metadata") or {}
    visible = {k: metadata[k] for k in ("name", "generateName") if k in metadata}
    return list(_cel_errors({**document, "metadata": visible}, schema, ()))


# --- metadata --------------------------------------------------------------------------


def metadata_errors(document: Mapping[str, Any]) -> list[FieldError]:
    """The object-name checks kube-apiserver makes for a cluster-scoped custom resource."""
    metadata = document.get("metadata")
    if not isinstance(metadata, Mapping):
        return [FieldError("metadata.name", ErrorType.REQUIRED, "name or generateName is required")]
    errors = []
    name = metadata.get("name")
    if not name and not metadata.get("generateName"):
        errors.append(
            FieldError("metadata.name", ErrorType.REQUIRED, "name or generateName is required")
        )
    if name and (
        not isinstance(name, str) or len(name) > 253 or not re.match(DNS_SUBDOMAIN_PATTERN, name)
    ):
        errors.append(
            FieldError(
                "metadata.name",
                ErrorType.INVALID,
                f"{_quote(name)}: a lowercase RFC 1123 subdomain must consist of lower case "
                "alphanumeric characters, '-' or '.', and must start and end with an "
                "alphanumeric character",
            )
        )
    return errors


# --- whole documents -------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _schemas() -> dict[str, dict[str, Any]]:
    return {r.kind: crds.root_schema(r) for r in crds.RESOURCES}


def is_api_document(document: Any) -> bool:
    """Tell whether ``document`` is one of our kinds (any version of the fedcompute group)."""
    if not isinstance(document, Mapping):
        return False
    api_version = document.get("apiVersion")
    return (
        isinstance(api_version, str)
        and api_version.split("/", 1)[0] == GROUP
        and document.get("kind") in crds.RESOURCES_BY_KIND
    )


def _model_errors(kind: str, document: Mapping[str, Any]) -> list[FieldError]:
    model = crds.RESOURCES_BY_KIND[kind].model
    try:
        model.model_validate(document)
    except pydantic.ValidationError as exc:
        return [
            FieldError(
                render_path(
                    tuple(("index", p) if isinstance(p, int) else ("field", p) for p in err["loc"])
                ),
                ErrorType.INVALID,
                err["msg"],
            )
            for err in exc.errors()
        ]
    return []


def validate_document(document: Mapping[str, Any]) -> list[FieldError]:
    """All errors of one manifest of a fedcompute kind; ``[]`` when it is valid.

    Mirrors a create or update of the object: as the status subresource is enabled, the
    apiserver ignores ``status`` there (only its unknown fields are rejected, at decoding),
    and so does this function; use :func:`validate_status` for status writes. The document
    is not modified. Documents of other kinds are not ours to judge: call
    :func:`is_api_document` first.
    """
    return _validate(document, with_status=False)


def validate_status(document: Mapping[str, Any]) -> list[FieldError]:
    """Errors of a whole object as written through the status subresource (status included)."""
    return _validate(document, with_status=True)


def _validate(document: Mapping[str, Any], *, with_status: bool) -> list[FieldError]:
    kind = document.get("kind")
    if kind not in crds.RESOURCES_BY_KIND:
        return [FieldError("kind", ErrorType.UNSUPPORTED, f"{_quote(kind)}: not a fedcompute kind")]
    if document.get("apiVersion") != API_VERSION:
        return [
            FieldError(
                "apiVersion",
                ErrorType.UNSUPPORTED,
                f'{_quote(document.get("apiVersion"))}: supported values: "{API_VERSION}"',
            )
        ]
    schema = _schemas()[str(kind)]
    unknown = unknown_field_errors(document, schema)
    if unknown:
        return unknown
    obj = copy.deepcopy(dict(document))
    if not with_status:
        obj.pop("status", None)
    obj = apply_defaults(obj, schema)
    metadata = obj.get("metadata")
    if isinstance(metadata, dict) and not metadata.get("name") and metadata.get("generateName"):
        # The apiserver names the object before validating it; stand in a typical suffix.
        metadata["name"] = f"{metadata['generateName']}abcde"
    errors = metadata_errors(obj) + schema_errors(obj, schema)
    if any(e.type in BLOCKING for e in errors):
        errors.append(FieldError("", ErrorType.INVALID, RULES_NOT_CHECKED))
        return errors
    errors += cel_errors(obj, schema)
    if not errors:
        errors = _model_errors(str(kind), obj)
    return errors


# --- files -----------------------------------------------------------------------------

MANIFEST_SUFFIXES: Final = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class DocumentReport:
    """The outcome for one document of a file (``index`` counts from 1)."""

    file: str
    index: int
    kind: str | None
    name: str | None
    errors: tuple[FieldError, ...] = field(default=())

    @property
    def valid(self) -> bool:
        """True when the document has no errors."""
        return not self.errors

    @property
    def object(self) -> str:
        """``Kind/name`` for messages."""
        return f"{self.kind or '?'}/{self.name or '?'}"

    def lines(self) -> list[str]:
        """One line per error: ``file:document: Kind/name: field: message``."""
        return [f"{self.file}:{self.index}: {self.object}: {e}" for e in self.errors]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for ``-o json``."""
        return {
            "file": self.file,
            "document": self.index,
            "kind": self.kind,
            "name": self.name,
            "valid": self.valid,
            "errors": [e.to_dict() for e in self.errors],
        }


def manifest_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Expand directories (recursively, sorted) into their YAML and JSON files."""
    for path in paths:
        if path.is_dir():
            yield from sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix in MANIFEST_SUFFIXES
            )
        else:
            yield path


def validate_text(text: str, *, file: str = "<stdin>") -> list[DocumentReport]:
    """Validate every fedcompute document of a (multi-document) YAML or JSON text."""
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        return [
            DocumentReport(
                file, 0, None, None, (FieldError("", ErrorType.INVALID, f"not YAML: {detail}"),)
            )
        ]
    reports = []
    for index, document in enumerate(documents, start=1):
        if not is_api_document(document):
            continue
        metadata = document.get("metadata")
        name = metadata.get("name") if isinstance(metadata, Mapping) else None
        reports.append(
            DocumentReport(
                file=file,
                index=index,
                kind=str(document["kind"]),
                name=name if isinstance(name, str) else None,
                errors=tuple(validate_document(document)),
            )
        )
    return reports


def validate_paths(paths: Iterable[Path]) -> list[DocumentReport]:
    """Validate files and directories; unreadable paths become reports with one error."""
    reports: list[DocumentReport] = []
    for path in manifest_files(paths):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reports.append(
                DocumentReport(
                    str(path),
                    0,
                    None,
                    None,
                    (FieldError("", ErrorType.INVALID, f"cannot read: {exc}"),),
                )
            )
            continue
        reports.extend(validate_text(text, file=str(path)))
    return reports
