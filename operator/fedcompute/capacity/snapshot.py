"""What the planner sees: observed objects, parsed on demand, and a frozen view of them. Pure.

Status belongs to the operator, so a status someone else wrote (foreign condition types,
fields out of bounds, garbage) must never make an object unplannable: the spec is parsed
on its own, and the status is salvaged field by field (what does not validate is treated
as absent and replaced by the next write).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from fedcompute.api.pool import ConditionType as PoolConditionType
from fedcompute.api.pool import RegionPool, RegionPoolStatus
from fedcompute.api.provider import ComputeProvider, ComputeProviderStatus
from fedcompute.api.provider import ConditionType as ProviderConditionType
from fedcompute.capacity.catalog import Catalog

Json = dict[str, Any]
Model = ComputeProvider | RegionPool

PROVIDER_CONDITIONS: frozenset[str] = frozenset(
    v for k, v in vars(ProviderConditionType).items() if k.isupper()
)
POOL_CONDITIONS: frozenset[str] = frozenset(
    v for k, v in vars(PoolConditionType).items() if k.isupper()
)
_SALVAGE_ROUNDS = 8


def field_error(exc: ValidationError) -> str:
    """The first validation error as ``field.path: message``."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    return f"{where}: {first.get('msg', 'invalid')}"


def salvage_status(
    raw: object,
    model: type[ComputeProviderStatus] | type[RegionPoolStatus],
    owned: frozenset[str],
) -> ComputeProviderStatus | RegionPoolStatus | None:
    """The parts of an observed status that validate; conditions of other types are dropped.

    Fields that fail validation are removed one round at a time, so one bad field costs
    only itself (its transition times or carried figures), never the rest.
    """
    if not isinstance(raw, Mapping):
        return None
    status = dict(raw)
    conditions = status.get("conditions")
    if isinstance(conditions, list):
        status["conditions"] = [
            c for c in conditions if isinstance(c, Mapping) and c.get("type") in owned
        ]
    for _ in range(_SALVAGE_ROUNDS):
        try:
            return model.model_validate(status)
        except ValidationError as exc:
            bad = {str(e["loc"][0]) for e in exc.errors() if e.get("loc")}
            if not bad or not bad & set(status):
                return None
            for key in bad:
                status.pop(key, None)
    return None


class Observed:
    """One observed ComputeProvider or RegionPool: its raw body, parsed once on first use."""

    __slots__ = ("_error", "_inherit", "_kind", "_model", "_parsed", "body")

    def __init__(
        self,
        kind: type[ComputeProvider] | type[RegionPool],
        body: Json,
        previous: Observed | None = None,
    ) -> None:
        self.body = body
        self._kind = kind
        self._model: Model | None = None
        self._error = ""
        self._parsed = False
        self._inherit: tuple[Json, Model | None, str] | None = None
        """The identity, spec and parse of the copy this one replaces: its model is reused
        while they are the same (most new copies only carry a new status). Only these
        are kept, never the older body itself."""
        if previous is not None:
            if previous._parsed:
                self._inherit = (_identity(previous.body), previous._model, previous._error)
            else:
                self._inherit = previous._inherit

    def _parse(self) -> None:
        if self._parsed:
            return
        self._parsed = True
        inherit, self._inherit = self._inherit, None
        if inherit is not None and inherit[0] == _identity(self.body):
            self._model, self._error = inherit[1], inherit[2]
            return
        try:
            model = self._kind.model_validate({**self.body, "status": None})
        except ValidationError as exc:
            self._error = field_error(exc)
            return
        except (ValueError, ArithmeticError) as exc:  # pragma: no cover - validators are total
            self._error = f"spec: {type(exc).__name__}"
            return
        self._model = model

    @property
    def model(self) -> Model | None:
        """The parsed object without its status, or None when the spec does not validate.

        Kept for the object's lifetime (claims read it every pass); the status is parsed
        only when asked for (:meth:`with_status`), since a converged plan never needs it.
        """
        self._parse()
        return self._model

    def with_status(self) -> Model | None:
        """:attr:`model` with the observed status salvaged into it (built on each call)."""
        model = self.model
        if model is None:
            return None
        if isinstance(model, ComputeProvider):
            status: ComputeProviderStatus | RegionPoolStatus | None = salvage_status(
                self.body.get("status"), ComputeProviderStatus, PROVIDER_CONDITIONS
            )
        else:
            status = salvage_status(self.body.get("status"), RegionPoolStatus, POOL_CONDITIONS)
        return model.model_copy(update={"status": status})

    @property
    def error(self) -> str:
        """Why the spec does not validate ('' when it does)."""
        self._parse()
        return self._error

    @property
    def metadata(self) -> Json:
        """The raw ``metadata`` (empty when missing)."""
        meta = self.body.get("metadata")
        return meta if isinstance(meta, dict) else {}

    @property
    def name(self) -> str:
        """``metadata.name``."""
        return str(self.metadata.get("name") or "")

    @property
    def resource_version(self) -> str:
        """``metadata.resourceVersion`` ('' when unknown)."""
        return str(self.metadata.get("resourceVersion") or "")

    @property
    def deleting(self) -> bool:
        """Whether a deletion was requested (finalizers hold it)."""
        return bool(self.metadata.get("deletionTimestamp"))

    @property
    def finalizers(self) -> tuple[str, ...]:
        """``metadata.finalizers``."""
        value = self.metadata.get("finalizers")
        return tuple(str(f) for f in value) if isinstance(value, list) else ()

    @property
    def raw_status(self) -> Json:
        """The status exactly as observed ({} when absent or not an object)."""
        status = self.body.get("status")
        return status if isinstance(status, dict) else {}


def _identity(body: Json) -> Json:
    """What a model is parsed from, status aside: copies equal in this parse the same."""
    meta = body.get("metadata") or {}
    return {
        "spec": body.get("spec"),
        "generation": meta.get("generation"),
        "labels": meta.get("labels"),
        "uid": meta.get("uid"),
        "name": meta.get("name"),
    }


@dataclass(frozen=True)
class Rejection:
    """A write the API server refused, recorded against the object that owns it."""

    what: str
    """What was refused, e.g. ``create Node fc-a`` or ``status``."""
    code: int
    message: str
    status_write: bool = False
    """True when the refused write was the owner's own status (no condition can carry it)."""


@dataclass(frozen=True)
class Snapshot:
    """The observed world at one instant, as the planner reads it (never mutated by it)."""

    providers: Mapping[str, Observed] = field(default_factory=dict)
    pools: Mapping[str, Observed] = field(default_factory=dict)
    nodes: Mapping[str, Json] = field(default_factory=dict)
    leases: Mapping[str, Json] = field(default_factory=dict)
    rejections: Mapping[tuple[str, str], Rejection] = field(default_factory=dict)
    """Refused writes by owner ``(plural, name)``, until a retry succeeds or the owner changes."""
    exported: Mapping[str, Mapping[str, Json]] = field(default_factory=dict)
    """Objects the operator exports (Kueue ResourceFlavors and ClusterQueues,
    ClusterProfiles) as observed: collection -> name -> body."""
    kueue: bool | None = None
    """None: the operator runs without Kueue export; else whether Kueue's API is served."""
    export_rejections: Mapping[tuple[str, str], Rejection] = field(default_factory=dict)
    """Refused writes of exported objects, by owner (reported on the export's condition)."""
    cluster_profiles: str | None = None
    """The namespace ClusterProfiles are published in (None: not published)."""
    export_written: Mapping[tuple[str, str], datetime] = field(default_factory=dict)
    """When each exported object was last written, by (collection, name): a ClusterProfile
    is written at most once per 30 seconds."""
    catalog: Catalog | None = None
    """Accelerator models: the built-in catalog with the AcceleratorModel objects over it
    (None: the built-in catalog alone). A new catalog object on every change of them."""
