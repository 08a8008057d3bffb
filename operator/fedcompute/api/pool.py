"""RegionPool: a set of ComputeProviders, chosen by region and labels, offered as nodes.

Each provider is claimed by at most one pool: among the pools that select it, the highest
``priority`` wins and ties go to the pool whose name sorts first. The claimed providers
appear on the host cluster as virtual nodes carrying the pool's ``nodeTemplate``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Final, Literal

from pydantic import ConfigDict, Field

from fedcompute.api import API_VERSION, CATEGORY
from fedcompute.api.common import (
    CONDITIONS_FIELD_EXTRA,
    LABEL_KEYS_RULE,
    Condition,
    DnsLabel,
    DnsSubdomain,
    Folded,
    LabelSelector,
    LabelValue,
    ObjectMeta,
    QualifiedName,
    QuantityMap,
    ReadyCount,
    SlotMap,
    TflopsByPrecision,
    WireModel,
    list_map,
    rule,
    rules,
)

KIND: Final = "RegionPool"
PLURAL: Final = "regionpools"
SINGULAR: Final = "regionpool"
SHORT_NAMES: Final = ("rpool",)

PRIORITY_MIN: Final = -1000
PRIORITY_MAX: Final = 1000


class ConditionType:
    """Condition types a RegionPool reports."""

    READY: Final = "Ready"
    """At least ``minReadyProviders`` claimed providers are Ready (a paused pool says so in
    the message: it still reports, but its nodes are not updated)."""
    DEGRADED: Final = "Degraded"
    """Some claimed providers are not Ready."""
    RECONCILING: Final = "Reconciling"
    """True while some claimed provider waits for a collection of its current spec
    (kstatus reads it as InProgress)."""
    STALLED: Final = "Stalled"
    """True when the pool cannot progress without a change from the user: an invalid spec
    or a write the API server refused (kstatus reads it as Failed)."""
    KUEUE_EXPORTED: Final = "KueueExported"
    """Only with ``spec.kueue``: whether the pool's ResourceFlavors and ClusterQueue are in
    place with the current quotas (False: Kueue is not installed, a name is taken by an
    object fedcompute did not create, or Kueue refused a write)."""


class Reason:
    """CamelCase reasons used in RegionPool conditions."""

    ENOUGH_PROVIDERS_READY: Final = "EnoughProvidersReady"
    NOT_ENOUGH_PROVIDERS_READY: Final = "NotEnoughProvidersReady"
    NO_PROVIDERS: Final = "NoProviders"
    PROVIDERS_NOT_READY: Final = "ProvidersNotReady"
    ALL_PROVIDERS_READY: Final = "AllProvidersReady"
    PLAN_FAILED: Final = "PlanFailed"
    """Planning the pool's status raised; its providers and nodes are unaffected."""
    WRITE_REJECTED: Final = "WriteRejected"
    """The API server refused the pool's status write."""
    INVALID_SPEC: Final = "InvalidSpec"
    RECONCILED: Final = "Reconciled"
    AWAITING_COLLECTION: Final = "AwaitingCollection"
    NOT_STALLED: Final = "NotStalled"
    # KueueExported
    EXPORTED: Final = "Exported"
    KUEUE_NOT_INSTALLED: Final = "KueueNotInstalled"
    KUEUE_EXPORT_DISABLED: Final = "KueueExportDisabled"
    """The operator runs without ``--kueue``: it has no rights to write Kueue objects."""
    NAME_TAKEN: Final = "NameTaken"
    """An object of an exported name exists and was not created by fedcompute."""
    EXPORT_PENDING: Final = "ExportPending"
    """The ClusterQueue is being created."""


TaintEffect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


class Taint(WireModel):
    """A taint put on the pool's virtual nodes."""

    key: QualifiedName = Field(description="Taint key (a qualified name).")
    value: LabelValue | None = Field(default=None, description="Taint value.")
    effect: TaintEffect = Field(description="NoSchedule, PreferNoSchedule or NoExecute.")


class NodeTemplate(WireModel):
    """Labels and taints added to every virtual node of the pool."""

    labels: dict[str, LabelValue] | None = Field(
        default=None,
        max_length=32,
        description="Labels added to the pool's virtual nodes.",
        json_schema_extra=rules(LABEL_KEYS_RULE),
    )
    taints: list[Taint] | None = Field(
        default=None,
        max_length=16,
        description="Taints added to the pool's virtual nodes, unique by key and effect.",
        json_schema_extra=list_map("key", "effect"),
    )


KueueQuota = Literal["Allocatable", "Available"]


class KueueExport(WireModel):
    """Export the pool to Kueue as a ClusterQueue whose quotas follow its capacity."""

    cluster_queue: DnsSubdomain | None = Field(
        default=None,
        description="Name of the ClusterQueue (default fc-<pool name>).",
    )
    cohort: DnsSubdomain | None = Field(
        default=None,
        description="Kueue cohort the ClusterQueue joins, to borrow and lend quota.",
    )
    quota: KueueQuota = Field(
        default="Allocatable",
        description="Allocatable (default): nominal quotas are what the pool's Ready, "
        "schedulable providers offer. Available: what they have free now (less what their "
        "own pods already use).",
    )


class RegionPoolSpec(WireModel):
    """Which providers the pool wants and how its virtual nodes look."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            rule(
                "has(self.regions) || has(self.providerSelector)",
                "at least one of regions or providerSelector must be set",
            )
        )
    )

    regions: list[DnsLabel] | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Regions whose providers the pool selects. With providerSelector too, "
        "a provider must satisfy both.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    provider_selector: LabelSelector | None = Field(
        default=None,
        description="Label selector over ComputeProviders; {} selects every provider.",
    )
    priority: int = Field(
        default=0,
        ge=PRIORITY_MIN,
        le=PRIORITY_MAX,
        description="When several pools select one provider the highest priority claims it; "
        "ties go to the pool whose name sorts first.",
    )
    node_template: NodeTemplate | None = Field(
        default=None, description="Labels and taints for the pool's virtual nodes."
    )
    min_ready_providers: int = Field(
        default=1,
        ge=0,
        le=10_000,
        description="Ready providers needed for the pool to be Ready.",
    )
    paused: bool = Field(
        default=False,
        description="When true the pool keeps its claims but stops updating its nodes.",
    )
    kueue: KueueExport | None = Field(
        default=None,
        description="Export the pool to Kueue (kueue.x-k8s.io/v1beta2): one ResourceFlavor "
        "per accelerator model (and one for providers without accelerators) and a "
        "ClusterQueue whose nominal quotas follow the pool's capacity. Unset: no export, and "
        "objects exported before are deleted.",
    )

    def selects(self, *, region: str, labels: Mapping[str, str] | None) -> bool:
        """Tell whether a provider in ``region`` with ``labels`` is selected (ignores claims)."""
        if self.regions is not None and region not in self.regions:
            return False
        if self.provider_selector is not None and not self.provider_selector.matches(labels):
            return False
        return self.regions is not None or self.provider_selector is not None


class RegionStatus(WireModel):
    """The pool's figures within one region."""

    name: DnsLabel = Field(description="Region name.")
    providers: int = Field(default=0, ge=0, description="Claimed providers in the region.")
    ready_providers: int = Field(default=0, ge=0, description="Of which Ready.")
    allocatable: QuantityMap | None = Field(default=None, description="Allocatable resources.")
    available: QuantityMap | None = Field(default=None, description="Free resources.")
    compute_power: TflopsByPrecision | None = Field(
        default=None,
        description="Peak dense TFLOPS per precision of the region's Ready, schedulable providers.",
    )


class PoolAcceleratorStatus(WireModel):
    """Accelerators of one model over the pool's Ready, schedulable providers."""

    model: LabelValue = Field(min_length=1, description="Accelerator model.")
    vendor: LabelValue | None = Field(default=None, description="Vendor (e.g. NVIDIA, Huawei).")
    count: int = Field(ge=0, description="Devices offered (allocatable).")
    allocated: int | None = Field(
        default=None, ge=0, description="Devices requested by running pods or allocated to claims."
    )
    available: int = Field(default=0, ge=0, description="Devices still free.")
    slots: SlotMap | None = Field(
        default=None,
        description='Jobs that fit now, by devices per job ("1", "2", "4", "8", "16"), summed '
        "over the providers that report slots for this model.",
    )


class RegionPoolStatus(WireModel):
    """The pool's roll-up of its claimed providers; written only by the operator."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation this status describes."
    )
    conditions: list[Condition] | None = Field(
        default=None,
        max_length=8,
        description="Ready, Degraded, Reconciling and Stalled, one entry per type.",
        json_schema_extra=CONDITIONS_FIELD_EXTRA,
    )
    providers: ReadyCount | None = Field(
        default=None, description="Claimed providers, and how many are Ready."
    )
    capacity: QuantityMap | None = Field(default=None, description="Total resources.")
    allocatable: QuantityMap | None = Field(
        default=None, description="Resources the pool's nodes offer."
    )
    allocated: QuantityMap | None = Field(
        default=None, description="Resources requested by running pods."
    )
    available: QuantityMap | None = Field(default=None, description="Allocatable minus allocated.")
    regions: list[RegionStatus] | None = Field(
        default=None,
        max_length=64,
        description="Figures per region.",
        json_schema_extra=list_map("name"),
    )
    accelerators: list[PoolAcceleratorStatus] | None = Field(
        default=None,
        max_length=32,
        description="Accelerators per model.",
        json_schema_extra=list_map("model"),
    )
    accelerator_count: int | None = Field(
        default=None, ge=0, description="Allocatable accelerator devices over all models."
    )
    compute_power: TflopsByPrecision | None = Field(
        default=None,
        description="Peak dense TFLOPS per precision over the pool's Ready, schedulable providers.",
    )
    compute_power_excluded_devices: int | None = Field(
        default=None,
        ge=0,
        description="Offered devices left out of computePower: their model has no figures.",
    )
    nodes: int | None = Field(default=None, ge=0, description="Virtual nodes of the pool.")
    folded: Folded | None = Field(
        default=None,
        description="Entries that did not fit this status's bounds, summed into remainders.",
    )


class RegionPool(WireModel):
    """A pool of compute providers across regions, offered as virtual nodes."""

    model_config = ConfigDict(extra="ignore")

    # The pool's name is the value of the fedcompute.io/pool label on its virtual nodes,
    # and a label value has at most 63 characters.
    root_rules: ClassVar[list[dict[str, str]]] = [
        rule(
            "self.metadata.name.size() <= 63",
            "metadata.name must be at most 63 characters (it becomes the value of the "
            "fedcompute.io/pool label on the pool's virtual nodes)",
            field_path=".metadata.name",
        )
    ]
    printer_columns: ClassVar[list[dict[str, Any]]] = [
        {"name": "Providers", "type": "integer", "jsonPath": ".status.providers.total"},
        {"name": "Ready Providers", "type": "integer", "jsonPath": ".status.providers.ready"},
        {
            "name": "Ready",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        },
        {
            "name": "CPU",
            "type": "string",
            "jsonPath": ".status.allocatable.cpu",
            "description": "Allocatable CPU.",
        },
        {
            "name": "GPU",
            "type": "integer",
            "jsonPath": ".status.acceleratorCount",
            "description": "Allocatable accelerator devices over all models.",
        },
        {"name": "Priority", "type": "integer", "jsonPath": ".spec.priority", "priority": 1},
        {"name": "Nodes", "type": "integer", "jsonPath": ".status.nodes", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]

    api_version: str = Field(default=API_VERSION)
    kind: str = Field(default=KIND)
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: RegionPoolSpec = Field(description="Desired state, written by the admin.")
    status: RegionPoolStatus | None = Field(
        default=None, description="Observed state, written by the operator."
    )

    @property
    def name(self) -> str:
        """The object's name (empty if unnamed)."""
        return self.metadata.name or ""


CATEGORIES: Final = (CATEGORY,)
