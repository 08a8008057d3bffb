"""Pieces shared by both custom resources: names, quantities, durations, selectors, conditions.

Every constraint lives on the annotated types and models here, next to the CEL rules
(``x-kubernetes-validations``) that the CRD generator copies verbatim. The offline
validator evaluates the very same rules, so nothing is written twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel

from fedcompute import quantities

# --- CEL rules -------------------------------------------------------------------------


def rule(
    expression: str,
    message: str,
    *,
    field_path: str | None = None,
    reason: str | None = None,
) -> dict[str, str]:
    """One ``x-kubernetes-validations`` entry; ``field_path`` points the error at a child."""
    entry = {"rule": expression, "message": message}
    if field_path is not None:
        entry["fieldPath"] = field_path
    if reason is not None:
        entry["reason"] = reason
    return entry


def rules(*entries: dict[str, str]) -> dict[str, Any]:
    """``json_schema_extra`` carrying CEL rules for a field or a model."""
    return {"x-kubernetes-validations": list(entries)}


# --- Names -----------------------------------------------------------------------------

DNS_LABEL_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# A qualified name (label key, resource name): optional DNS-subdomain prefix and a name part
# of at most 63 characters.
QUALIFIED_NAME_PATTERN: Final = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
QUALIFIED_NAME_MAX: Final = 316
LABEL_VALUE_PATTERN: Final = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
DATA_KEY_PATTERN: Final = r"^[-._a-zA-Z0-9]+$"

DnsLabel = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)]
DnsSubdomain = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)]
QualifiedName = Annotated[
    str, Field(min_length=1, max_length=QUALIFIED_NAME_MAX, pattern=QUALIFIED_NAME_PATTERN)
]
LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_PATTERN)]
# Keys of a map cannot carry an OpenAPI pattern in a structural schema, so maps whose keys
# are qualified names check them with this CEL rule instead.
QUALIFIED_KEYS_RULE: Final = rule(
    f"self.all(k, k.size() <= {QUALIFIED_NAME_MAX} && k.matches(r'{QUALIFIED_NAME_PATTERN}'))",
    "keys must be qualified names such as cpu, memory or nvidia.com/gpu",
)
LABEL_KEYS_RULE: Final = rule(
    f"self.all(k, k.size() <= {QUALIFIED_NAME_MAX} && k.matches(r'{QUALIFIED_NAME_PATTERN}'))",
    "label keys must be qualified names such as example.com/tier",
)

# --- Quantities ------------------------------------------------------------------------

_SIGN = r"^(\+|-)?"
if not quantities.QUANTITY_PATTERN.startswith(_SIGN):  # pragma: no cover - guards an edit
    raise ImportError("fedcompute.quantities.QUANTITY_PATTERN changed shape")
# Capacities are never negative: the CRD pattern drops the sign, integers get minimum 0.
NONNEGATIVE_QUANTITY_PATTERN: Final = "^" + quantities.QUANTITY_PATTERN[len(_SIGN) :]
QUANTITY_MAX_LENGTH: Final = 64

QUANTITY_SCHEMA: Final[dict[str, Any]] = {
    "x-kubernetes-int-or-string": True,
    "pattern": NONNEGATIVE_QUANTITY_PATTERN,
    "maxLength": QUANTITY_MAX_LENGTH,
    "minimum": 0,
}

# Kubernetes represents no quantity above 2^63-1, yet the pattern admits 1e999999999. An
# integer is an int64 in CEL, so only strings need checking. A long exponent is refused
# before quantity() sees it: resource.Quantity writes out every digit of such a number
# when it compares (one 1e99999999 ran a request past the apiserver's timeout). A binary
# value (Ki..Ei) above the limit parses capped to exactly 2^63-1, so binary values must
# stay strictly below it, which refuses 8Ei; decimal ones may equal it. A string that is
# no quantity at all is left to the pattern to report.
_MAX_TEXT: Final = str(quantities.MAX_QUANTITY)
QUANTITY_RANGE_RULE: Final = rule(
    "type(self) != string || (!self.matches('[eE][-+]?[0-9]{4,}$') && (!isQuantity(self) || "
    f"(self.endsWith('i') ? quantity(self).isLessThan(quantity('{_MAX_TEXT}')) : "
    f"!quantity(self).isGreaterThan(quantity('{_MAX_TEXT}')))))",
    f"must be at most {_MAX_TEXT} (2^63-1), the largest quantity Kubernetes represents; "
    "below it with a binary suffix (Ki to Ei), and with an exponent of at most 3 digits",
)
SPEC_QUANTITY_SCHEMA: Final[dict[str, Any]] = {**QUANTITY_SCHEMA, **rules(QUANTITY_RANGE_RULE)}


def _parse_quantity(value: object, *, cap: bool = True) -> Decimal:
    """Accept the wire form (string or integer) or an already computed decimal.

    Status figures are sums the operator caps at 2^63-1 when it writes them, so a larger
    one read back is capped the same way (the apiserver accepts it there); a computed
    decimal is kept as it is until it is written.
    """
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value!r} is not a quantity (not a finite number)")
        parsed = value
    elif isinstance(value, str | int) and not isinstance(value, bool):
        parsed = quantities.parse(value, cap=cap)
    else:
        raise ValueError(f"{value!r} is not a quantity (expected e.g. 500m, 4, 64Gi)")
    if parsed < 0:
        raise ValueError(f"{value!r} is negative")
    return parsed


def _parse_spec_quantity(value: object) -> Decimal:
    """A declared quantity: above 2^63-1 it is refused, with the limit named, as by the CRD."""
    parsed = _parse_quantity(value, cap=False)
    return quantities.parse(parsed) if isinstance(value, Decimal) else parsed


def plain_decimal(value: Decimal) -> str:
    """Format a decimal without exponent or trailing zeros (``19.5``, ``312``), capped."""
    return quantities.format_plain(value)


def _format_binary(value: Decimal) -> str:
    return quantities.format_quantity(value, binary=True)


Quantity = Annotated[
    Decimal,
    BeforeValidator(_parse_quantity),
    PlainSerializer(quantities.format_quantity, return_type=str),
    WithJsonSchema(QUANTITY_SCHEMA),
]
"""A non-negative Kubernetes quantity, parsed to an exact decimal, written canonically."""

MemoryQuantity = Annotated[
    Decimal,
    BeforeValidator(_parse_quantity),
    PlainSerializer(_format_binary, return_type=str),
    WithJsonSchema(QUANTITY_SCHEMA),
]
"""A byte quantity, written with binary suffixes (``80Gi``)."""

Tflops = Annotated[
    Decimal,
    BeforeValidator(_parse_quantity),
    PlainSerializer(plain_decimal, return_type=str),
    WithJsonSchema(QUANTITY_SCHEMA),
]
"""TFLOPS as a quantity, written as a plain decimal (``19.5``) rather than ``19500m``."""

# The spec variants: what an admin declares is refused above 2^63-1 at admission (CEL) and
# by the models. Status fields keep the plain types: the operator writes sums there, capped.
SpecQuantity = Annotated[
    Decimal,
    BeforeValidator(_parse_spec_quantity),
    PlainSerializer(quantities.format_quantity, return_type=str),
    WithJsonSchema(SPEC_QUANTITY_SCHEMA),
]
"""A declared :data:`Quantity`, at most 2^63-1."""

SpecMemoryQuantity = Annotated[
    Decimal,
    BeforeValidator(_parse_spec_quantity),
    PlainSerializer(_format_binary, return_type=str),
    WithJsonSchema(SPEC_QUANTITY_SCHEMA),
]
"""A declared :data:`MemoryQuantity`, at most 2^63-1."""

SpecTflops = Annotated[
    Decimal,
    BeforeValidator(_parse_spec_quantity),
    PlainSerializer(plain_decimal, return_type=str),
    WithJsonSchema(SPEC_QUANTITY_SCHEMA),
]
"""A declared :data:`Tflops`, at most 2^63-1."""

QUANTITY_MAP_MAX: Final = 32


def _format_quantity_map(values: Mapping[str, Decimal]) -> dict[str, str]:
    return quantities.format_map(values)


QuantityMap = Annotated[
    dict[str, Quantity],
    Field(
        max_length=QUANTITY_MAP_MAX,
        json_schema_extra=rules(QUALIFIED_KEYS_RULE),
    ),
    PlainSerializer(_format_quantity_map, return_type=dict[str, str]),
]
"""Resource name -> quantity (``{"cpu": "64", "memory": "512Gi", "nvidia.com/gpu": "8"}``)."""

SpecQuantityMap = Annotated[
    dict[str, SpecQuantity],
    Field(
        max_length=QUANTITY_MAP_MAX,
        json_schema_extra=rules(QUALIFIED_KEYS_RULE),
    ),
    PlainSerializer(_format_quantity_map, return_type=dict[str, str]),
]
"""A declared :data:`QuantityMap`: every quantity at most 2^63-1."""

# --- Durations -------------------------------------------------------------------------

DURATION_PATTERN: Final = r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|ms|s|m|h)")
_DURATION_UNITS: Final = {
    "ns": Decimal("1e-9"),
    "us": Decimal("1e-6"),
    "ms": Decimal("1e-3"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
}


def parse_duration(value: str | float | int) -> float:
    """Parse a Go duration string (``30s``, ``1m30s``, ``1.5h``) into seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str) or re.fullmatch(DURATION_PATTERN, value) is None:
        raise ValueError(f"{value!r} is not a duration (expected e.g. 30s, 3m, 1h30m)")
    total = sum(
        (Decimal(number) * _DURATION_UNITS[unit] for number, unit in _DURATION_PART.findall(value)),
        Decimal(0),
    )
    return float(total)


def format_duration(seconds: float) -> str:
    """Format seconds as a compact Go duration (``30s``, ``3m``, ``1h30m``, ``500ms``)."""
    millis = round(Decimal(str(seconds)) * 1000)
    if millis == 0:
        return "0s"
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    parts = []
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if secs:
        parts.append(f"{secs}s")
    if millis:
        parts.append(f"{millis}ms")
    return "".join(parts)


DurationSeconds = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN, "maxLength": 32}),
]
"""A duration: a Go duration string on the wire, seconds (float) in Python."""

# --- Timestamps ------------------------------------------------------------------------


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC, whole seconds, as metav1.Time writes it."""
    return _as_utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


Timestamp = Annotated[
    datetime,
    AfterValidator(_as_utc),
    PlainSerializer(format_time, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time", "maxLength": 64}),
]

# --- Base model ------------------------------------------------------------------------


class WireModel(BaseModel):
    """Base of every API model: camelCase on the wire, snake_case in Python, no extras."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
    )

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready wire form (camelCase, unset optional fields left out)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


# --- Label selectors -------------------------------------------------------------------

SelectorOperator = Literal["In", "NotIn", "Exists", "DoesNotExist"]


class LabelSelectorRequirement(WireModel):
    """One label requirement: a key, an operator and (for In and NotIn) a set of values."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            rule(
                "self.operator in ['In', 'NotIn'] ? "
                "(has(self.values) && self.values.size() > 0) : "
                "(!has(self.values) || self.values.size() == 0)",
                "values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist",
                field_path=".values",
            )
        )
    )

    key: QualifiedName = Field(description="The label key the requirement applies to.")
    operator: SelectorOperator = Field(
        description="How the key relates to the values: In, NotIn, Exists or DoesNotExist."
    )
    values: list[LabelValue] | None = Field(
        default=None,
        max_length=64,
        description="Label values; non-empty for In and NotIn, empty for Exists and DoesNotExist.",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Tell whether ``labels`` satisfy this requirement."""
        present = self.key in labels
        if self.operator == "Exists":
            return present
        if self.operator == "DoesNotExist":
            return not present
        inside = present and labels[self.key] in (self.values or [])
        return inside if self.operator == "In" else not inside


class LabelSelector(WireModel):
    """A Kubernetes label selector; requirements are ANDed and ``{}`` selects everything."""

    match_labels: dict[str, LabelValue] | None = Field(
        default=None,
        max_length=64,
        description="Labels that must all be present with exactly these values.",
        json_schema_extra=rules(LABEL_KEYS_RULE),
    )
    match_expressions: list[LabelSelectorRequirement] | None = Field(
        default=None,
        max_length=32,
        description="Requirements that must all hold.",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        """Tell whether an object with ``labels`` is selected (pure, no I/O)."""
        labels = labels or {}
        for key, value in (self.match_labels or {}).items():
            if labels.get(key) != value:
                return False
        return all(req.matches(labels) for req in self.match_expressions or [])


# --- Conditions ------------------------------------------------------------------------

CONDITION_TYPE_PATTERN: Final = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
REASON_PATTERN: Final = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"

ConditionStatus = Literal["True", "False", "Unknown"]
TRUE: Final = "True"
FALSE: Final = "False"
UNKNOWN: Final = "Unknown"


class Condition(WireModel):
    """One aspect of the object's state, in the shape of metav1.Condition."""

    type: str = Field(
        max_length=316,
        pattern=CONDITION_TYPE_PATTERN,
        description="The aspect this condition describes, in CamelCase (e.g. Ready).",
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    observed_generation: int | None = Field(
        default=None,
        ge=0,
        description="The metadata.generation this condition was computed from.",
    )
    last_transition_time: Timestamp = Field(
        description="When the status last changed from one value to another."
    )
    reason: str = Field(
        min_length=1,
        max_length=1024,
        pattern=REASON_PATTERN,
        description="A CamelCase, machine-readable reason for the last transition.",
    )
    message: str = Field(
        default="",
        max_length=32768,
        description="A human-readable explanation of the last transition.",
    )


def list_map(*keys: str) -> dict[str, Any]:
    """``json_schema_extra`` for a list of objects keyed (and kept unique) by ``keys``."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(keys)}


CONDITIONS_FIELD_EXTRA: Final[dict[str, Any]] = list_map("type")


def find_condition(conditions: Iterable[Condition] | None, type_: str) -> Condition | None:
    """The condition of ``type_``, if present."""
    return next((c for c in conditions or [] if c.type == type_), None)


def set_condition(
    conditions: Iterable[Condition] | None,
    *,
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str = "",
    observed_generation: int | None = None,
    now: datetime,
) -> list[Condition]:
    """Return ``conditions`` with ``type_`` set, keeping its transition time if unchanged.

    Pure, so that a status written twice with the same facts is byte-identical and the
    operator can skip the patch.
    """
    result: list[Condition] = []
    replaced = False
    for current in conditions or []:
        if current.type != type_:
            result.append(current)
            continue
        since = current.last_transition_time if current.status == status else now
        result.append(
            Condition(
                type=type_,
                status=status,
                reason=reason,
                message=message,
                observed_generation=observed_generation,
                last_transition_time=since,
            )
        )
        replaced = True
    if not replaced:
        result.append(
            Condition(
                type=type_,
                status=status,
                reason=reason,
                message=message,
                observed_generation=observed_generation,
                last_transition_time=now,
            )
        )
    return result


class ConditionSet:
    """The conditions of one status being rewritten in a pass.

    Each :meth:`set` goes through :func:`set_condition`, so an unchanged status keeps its
    transition time and a status written twice with the same facts is byte-identical.
    """

    def __init__(
        self,
        existing: Iterable[Condition] | None,
        *,
        generation: int | None,
        now: datetime,
        order: Iterable[str] = (),
    ) -> None:
        self._conditions = list(existing or [])
        self._generation = generation
        self._now = now
        self._order = {t: i for i, t in enumerate(order)}

    def set(self, type_: str, status: ConditionStatus, reason: str, message: str = "") -> None:
        """Set one condition (observedGeneration is the object's generation)."""
        self._conditions = set_condition(
            self._conditions,
            type_=type_,
            status=status,
            reason=reason,
            message=message,
            observed_generation=self._generation,
            now=self._now,
        )

    def discard(self, type_: str) -> None:
        """Drop the condition of ``type_`` (an aspect that no longer applies)."""
        self._conditions = [c for c in self._conditions if c.type != type_]

    def result(self) -> list[Condition]:
        """The conditions, in the given type order (others after, by type)."""
        return sorted(
            self._conditions, key=lambda c: (self._order.get(c.type, len(self._order)), c.type)
        )


# --- Small shared shapes ---------------------------------------------------------------

Precision = Literal["fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8"]
PRECISIONS: Final[tuple[str, ...]] = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8")


class TflopsByPrecision(WireModel):
    """TFLOPS (tera operations per second for int8) per numeric precision."""

    fp64: Tflops | None = Field(default=None, description="Double precision TFLOPS.")
    fp32: Tflops | None = Field(default=None, description="Single precision TFLOPS.")
    tf32: Tflops | None = Field(default=None, description="TensorFloat-32 tensor TFLOPS.")
    bf16: Tflops | None = Field(default=None, description="bfloat16 tensor TFLOPS.")
    fp16: Tflops | None = Field(default=None, description="Half precision tensor TFLOPS.")
    fp8: Tflops | None = Field(default=None, description="FP8 tensor TFLOPS.")
    int8: Tflops | None = Field(default=None, description="INT8 tensor TOPS.")

    def as_dict(self) -> dict[str, Decimal]:
        """The precisions that are set, as a plain map."""
        values = {p: getattr(self, p) for p in PRECISIONS}
        return {p: v for p, v in values.items() if v is not None}

    @classmethod
    def from_dict(cls, values: Mapping[str, Decimal]) -> TflopsByPrecision:
        """Build from a precision -> TFLOPS map (unknown precisions are an error)."""
        return cls.model_validate(dict(values))


class SpecTflopsByPrecision(TflopsByPrecision):
    """Declared TFLOPS per precision (a device's datasheet), each at most 2^63-1."""

    fp64: SpecTflops | None = Field(default=None, description="Double precision TFLOPS.")
    fp32: SpecTflops | None = Field(default=None, description="Single precision TFLOPS.")
    tf32: SpecTflops | None = Field(default=None, description="TensorFloat-32 tensor TFLOPS.")
    bf16: SpecTflops | None = Field(default=None, description="bfloat16 tensor TFLOPS.")
    fp16: SpecTflops | None = Field(default=None, description="Half precision tensor TFLOPS.")
    fp8: SpecTflops | None = Field(default=None, description="FP8 tensor TFLOPS.")
    int8: SpecTflops | None = Field(default=None, description="INT8 tensor TOPS.")


SLOT_KEYS: Final = ("1", "2", "4", "8", "16")
SlotMap = Annotated[
    dict[str, Annotated[int, Field(ge=0)]],
    Field(
        max_length=len(SLOT_KEYS),
        json_schema_extra=rules(
            rule(
                "self.all(k, k in [" + ", ".join(f"'{k}'" for k in SLOT_KEYS) + "])",
                "keys are job sizes: 1, 2, 4, 8 or 16 devices",
            )
        ),
    ),
]
"""Jobs that fit now, by devices per job on one node: ``{"1": 14, "8": 1, ...}``."""


class ReadyCount(WireModel):
    """How many of something exist and how many of them are ready."""

    total: int = Field(default=0, ge=0, description="How many there are.")
    ready: int = Field(default=0, ge=0, description="How many of them are ready.")


class ObjectMeta(BaseModel):
    """The parts of metav1.ObjectMeta the operator reads; everything else is kept as is."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    name: str | None = None
    generate_name: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class Folded(WireModel):
    """Entries that did not fit a status's bounds and were summed into a remainder entry."""

    resources: int | None = Field(
        default=None,
        ge=0,
        description="Resource names folded into fedcompute.io/other in the quantity maps.",
    )
    accelerators: int | None = Field(
        default=None, ge=0, description="Accelerator models folded into the model other-models."
    )
    regions: int | None = Field(
        default=None, ge=0, description="Regions folded into the region other-regions."
    )
