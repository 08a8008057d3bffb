"""ComputeProvider: one source of compute (an HPC centre, a cloud, a member cluster).

A provider is declared either statically (the admin states its resources and accelerators)
or through a member Kubernetes cluster whose nodes the operator reads. The operator fills
``status``; RegionPools claim providers and expose them as virtual nodes.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

from pydantic import ConfigDict, Field

from fedcompute.api import API_VERSION, CATEGORY
from fedcompute.api.common import (
    CONDITIONS_FIELD_EXTRA,
    DATA_KEY_PATTERN,
    Condition,
    DnsLabel,
    DnsSubdomain,
    DurationSeconds,
    Folded,
    LabelSelector,
    LabelValue,
    ObjectMeta,
    QualifiedName,
    QuantityMap,
    ReadyCount,
    SlotMap,
    SpecMemoryQuantity,
    SpecQuantityMap,
    SpecTflopsByPrecision,
    TflopsByPrecision,
    Timestamp,
    WireModel,
    list_map,
    rule,
    rules,
)

KIND: Final = "ComputeProvider"
PLURAL: Final = "computeproviders"
SINGULAR: Final = "computeprovider"
SHORT_NAMES: Final = ("cprov",)

# The provider's virtual node is named ``fc-<name>`` and that name is also a label value
# (at most 63 characters), so the provider's own name is capped at 60.
NAME_MAX_LENGTH: Final = 60
NODE_NAME_PREFIX: Final = "fc-"

DEFAULT_GPU_RESOURCE: Final = "nvidia.com/gpu"
DEFAULT_KUBECONFIG_KEY: Final = "kubeconfig"


class ConditionType:
    """Condition types a ComputeProvider reports."""

    READY: Final = "Ready"
    """The provider is collected, fresh and offers capacity."""
    COLLECTED: Final = "Collected"
    """The last inventory collection succeeded (always True for static sources)."""
    CLAIMED: Final = "Claimed"
    """A RegionPool claims the provider (see ``status.pool``)."""
    RECONCILING: Final = "Reconciling"
    """True while the figures do not yet describe the current spec: a member provider
    waiting for its first collection, or for one of its current generation (kstatus
    reads it as InProgress)."""
    STALLED: Final = "Stalled"
    """True when the provider cannot progress without a change from the user: an invalid
    or refused kubeconfig, a missing Secret, an invalid spec, a write the API server
    refused (kstatus reads it as Failed)."""


class Reason:
    """CamelCase reasons of ComputeProvider conditions, as the operator writes them."""

    # Collected (False reasons are also Ready's reason until a first good collection)
    STATIC_INVENTORY: Final = "StaticInventory"
    COLLECTED: Final = "Collected"
    PARTIAL_DEVICE_POOLS: Final = "PartialDevicePools"
    """Collected, but a DRA pool was mid-republish: its last complete figures are kept."""
    PENDING: Final = "Pending"
    UNREACHABLE: Final = "Unreachable"
    UNAUTHORIZED: Final = "Unauthorized"
    TIMEOUT: Final = "Timeout"
    INVALID_KUBECONFIG: Final = "InvalidKubeconfig"
    INSECURE_KUBECONFIG: Final = "InsecureKubeconfig"
    KUBECONFIG_NOT_FOUND: Final = "SecretNotFound"
    INVALID_INVENTORY: Final = "InvalidInventory"
    COLLECTION_FAILED: Final = "CollectionFailed"
    # Ready
    FRESH: Final = "Fresh"
    STALE: Final = "Stale"
    NO_READY_NODES: Final = "NoReadyNodes"
    INVALID_SPEC: Final = "InvalidSpec"
    PLAN_FAILED: Final = "PlanFailed"
    """Planning this provider raised; its node and figures are left as they were."""
    WRITE_REJECTED: Final = "WriteRejected"
    """The API server refused one of the provider's writes (its status, node or Lease)."""
    # Claimed
    CLAIMED: Final = "Claimed"
    NO_MATCHING_POOL: Final = "NoMatchingPool"
    # Reconciling and Stalled (when False)
    RECONCILED: Final = "Reconciled"
    AWAITING_COLLECTION: Final = "AwaitingCollection"
    NOT_STALLED: Final = "NotStalled"


STALLED_REASONS: Final = frozenset(
    {
        Reason.INVALID_KUBECONFIG,
        Reason.INSECURE_KUBECONFIG,
        Reason.KUBECONFIG_NOT_FOUND,
        Reason.INVALID_SPEC,
        Reason.WRITE_REJECTED,
    }
)
"""Ready reasons that need a change from the user: Stalled=True (kstatus: Failed)."""


# --- spec ------------------------------------------------------------------------------


class KubeconfigSecretRef(WireModel):
    """A key of a Secret in the operator's own namespace that holds a kubeconfig."""

    name: DnsSubdomain = Field(description="Name of the Secret (in the operator's namespace).")
    key: str = Field(
        default=DEFAULT_KUBECONFIG_KEY,
        min_length=1,
        max_length=253,
        pattern=DATA_KEY_PATTERN,
        description="Key within the Secret whose value is the kubeconfig.",
    )


class KubernetesSource(WireModel):
    """A member Kubernetes cluster whose nodes and pods are read to measure capacity."""

    kubeconfig_secret_ref: KubeconfigSecretRef = Field(
        description="The Secret key holding the member cluster's kubeconfig. The operator "
        "only lists nodes and pods with it; grant it no more than that."
    )
    node_selector: LabelSelector | None = Field(
        default=None,
        description="Only the member's nodes matching this selector count towards the "
        "provider. Unset selects every node.",
    )
    accelerator_model_label: QualifiedName | None = Field(
        default=None,
        description="Node label that names the accelerator model, read before the vendor "
        "table's own labels (e.g. nvidia.com/gpu.product, huawei.com/npu.chip.name). Unset: "
        "the vendor table's labels only.",
    )
    accelerator_resources: list[QualifiedName] | None = Field(
        default=None,
        min_length=1,
        max_length=16,
        description="Extended resources counted as accelerators, replacing the vendor table's "
        "(e.g. nvidia.com/gpu, huawei.com/Ascend910). Unset: every vendor's resources in the "
        "table. DRA devices are counted either way where the member serves resource.k8s.io/v1.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )


class StaticAccelerator(WireModel):
    """One accelerator model installed at a statically declared provider."""

    model: LabelValue = Field(
        min_length=1,
        description="Accelerator model as the vendor labels it (e.g. NVIDIA-A100-SXM4-80GB, "
        "Ascend-910B). Becomes a node label value, so at most 63 characters.",
    )
    resource_name: QualifiedName = Field(
        default=DEFAULT_GPU_RESOURCE,
        description="Extended resource that schedules these devices.",
    )
    count: int = Field(ge=0, le=1_000_000, description="Number of devices of this model.")
    memory_per_device: SpecMemoryQuantity | None = Field(
        default=None, description="Device memory of one device (e.g. 80Gi)."
    )
    tflops_per_device: SpecTflopsByPrecision | None = Field(
        default=None,
        description="Peak dense TFLOPS of one device per precision, from the vendor's "
        "datasheet; summed into status.computePower. Unset: the figures of the model's "
        "AcceleratorModel or built-in catalog entry, if any.",
    )
    devices_per_node: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="Devices of this model on each node. With it the provider reports "
        "status.accelerators[].slots (how many jobs of 1, 2, 4, 8 and 16 devices fit on one "
        "node); without it slots are absent, never guessed.",
    )


class StaticSource(WireModel):
    """Resources declared by hand, for sites the operator cannot read (HPC centres, clouds)."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            rule(
                "!has(self.accelerators) || "
                "self.accelerators.all(a, a.resourceName in self.resources)",
                "every accelerator's resourceName must also be listed in resources",
                field_path=".accelerators",
            )
        )
    )

    resources: SpecQuantityMap = Field(
        min_length=1,
        description="Total resources of the provider: resource name -> quantity (e.g. "
        "cpu: 5120, memory: 40Ti, nvidia.com/gpu: 512).",
    )
    node_count: int | None = Field(
        default=None, ge=0, le=1_000_000, description="Number of physical nodes behind it."
    )
    accelerators: list[StaticAccelerator] | None = Field(
        default=None,
        max_length=16,
        description="Accelerator models installed, one entry per model.",
        json_schema_extra=list_map("model"),
    )


class ProviderSource(WireModel):
    """Where the provider's capacity comes from: exactly one of static or kubernetes."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            rule(
                "has(self.static) != has(self.kubernetes)",
                "exactly one of static or kubernetes must be set",
            )
        )
    )

    static: StaticSource | None = Field(
        default=None, description="Capacity declared by hand (HPC centres, clouds)."
    )
    kubernetes: KubernetesSource | None = Field(
        default=None,
        description="Capacity read from a member Kubernetes cluster through a kubeconfig Secret.",
    )


class Monitoring(WireModel):
    """How often the provider is collected and when its figures count as stale."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            rule(
                "duration(self.timeout) < duration(self.interval)",
                "timeout must be shorter than interval",
                field_path=".timeout",
            ),
            rule(
                "duration(self.staleAfter) >= duration(self.interval) + duration(self.interval)",
                "staleAfter must be at least twice the interval",
                field_path=".staleAfter",
            ),
        )
    )

    interval: DurationSeconds = Field(
        default=30.0,
        description="How often the provider is collected, between 5s and 1h (default 30s).",
        json_schema_extra={
            "default": "30s",
            **rules(
                rule(
                    "duration(self) >= duration('5s') && duration(self) <= duration('1h')",
                    "interval must be between 5s and 1h",
                )
            ),
        },
    )
    timeout: DurationSeconds = Field(
        default=10.0,
        description="Deadline of one collection; shorter than interval (default 10s).",
        json_schema_extra={
            "default": "10s",
            **rules(rule("duration(self) > duration('0s')", "timeout must be positive")),
        },
    )
    stale_after: DurationSeconds = Field(
        default=180.0,
        description="Figures older than this stop counting as Ready; at least twice the "
        "interval (default 3m).",
        json_schema_extra={"default": "3m"},
    )


class ComputeProviderSpec(WireModel):
    """The admin's declaration of a compute provider."""

    display_name: str | None = Field(
        default=None, max_length=128, description="Human-friendly name shown in reports."
    )
    region: DnsLabel = Field(
        description="Region the provider belongs to (a DNS label, e.g. east-china)."
    )
    zone: DnsLabel | None = Field(default=None, description="Zone within the region (a DNS label).")
    sector: DnsLabel | None = Field(
        default=None,
        description="Sector that operates it (a DNS label, e.g. telecom, research, industry).",
    )
    source: ProviderSource = Field(
        description="Where capacity comes from: exactly one of static or kubernetes."
    )
    reserved: SpecQuantityMap | None = Field(
        default=None,
        description="Resources held back from pools (e.g. for local users): subtracted "
        "from capacity to give allocatable.",
    )
    unschedulable: bool = Field(
        default=False,
        description="When true the provider stays in the inventory but offers nothing to "
        "pools (maintenance, draining).",
    )
    monitoring: Monitoring = Field(
        default_factory=Monitoring,
        description="Collection interval, timeout and staleness threshold.",
        json_schema_extra={"default": {"interval": "30s", "timeout": "10s", "staleAfter": "3m"}},
    )


# --- status ----------------------------------------------------------------------------


class ProviderAcceleratorStatus(WireModel):
    """Devices of one accelerator model at the provider."""

    model: LabelValue = Field(
        min_length=1,
        description="Accelerator model: the catalog's name when the model is known (an "
        "AcceleratorModel or built-in entry, matched by name or alias), else as the member "
        "labels it; unknown-<vendor> when it cannot be told (see modelUnknown).",
    )
    vendor: LabelValue | None = Field(default=None, description="Vendor (e.g. NVIDIA, Huawei).")
    resource_name: QualifiedName = Field(
        description="Extended resource carrying most of these devices, or the DRA driver "
        "that publishes them (e.g. nvidia.com/gpu, gpu.nvidia.com)."
    )
    resource_names: list[QualifiedName] | None = Field(
        default=None,
        max_length=16,
        description="Every extended resource and DRA driver whose devices are added into this "
        "entry, when there is more than one.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    capacity: int | None = Field(
        default=None, ge=0, description="Devices present, on every selected node, healthy or not."
    )
    count: int = Field(
        ge=0, description="Devices offered (allocatable): healthy, on Ready, schedulable nodes."
    )
    allocated: int = Field(
        default=0, ge=0, description="Devices requested by running pods or allocated to claims."
    )
    available: int = Field(default=0, ge=0, description="Devices still free.")
    unhealthy: int | None = Field(
        default=None,
        ge=0,
        description="Devices on Ready, schedulable nodes that are not offered: DRA devices "
        "tainted NoSchedule or NoExecute, and devices the device plugin reports unhealthy.",
    )
    slots: SlotMap | None = Field(
        default=None,
        description='Jobs that fit now, by devices per job ("1", "2", "4", "8", "16"): the '
        "sum over Ready, schedulable nodes of floor(free devices / size). Absent when "
        "unknown (a static provider without devicesPerNode).",
    )
    model_unknown: bool | None = Field(
        default=None,
        description="True when the model of these devices could not be told from labels or "
        "DRA attributes: they are counted, under unknown-<vendor>.",
    )


class ComputeProviderStatus(WireModel):
    """What the operator observed about the provider; written only by the operator."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation this status describes."
    )
    conditions: list[Condition] | None = Field(
        default=None,
        max_length=8,
        description="Ready, Collected, Claimed, Reconciling and Stalled, one entry per type.",
        json_schema_extra=CONDITIONS_FIELD_EXTRA,
    )
    capacity: QuantityMap | None = Field(default=None, description="Total resources.")
    allocatable: QuantityMap | None = Field(
        default=None, description="Capacity minus what is reserved; what pools may use."
    )
    allocated: QuantityMap | None = Field(
        default=None, description="Resources requested by running pods."
    )
    available: QuantityMap | None = Field(default=None, description="Allocatable minus allocated.")
    accelerators: list[ProviderAcceleratorStatus] | None = Field(
        default=None,
        max_length=16,
        description="Accelerators per model.",
        json_schema_extra=list_map("model"),
    )
    accelerator_count: int | None = Field(
        default=None, ge=0, description="Allocatable accelerator devices over all models."
    )
    nodes: ReadyCount | None = Field(default=None, description="Physical nodes behind it.")
    compute_power: TflopsByPrecision | None = Field(
        default=None,
        description="Peak dense TFLOPS per precision, summed over the offered devices of "
        "every model with known figures (AcceleratorModel, built-in catalog, or a static "
        "accelerator's tflopsPerDevice).",
    )
    compute_power_excluded_devices: int | None = Field(
        default=None,
        ge=0,
        description="Offered devices left out of computePower: their model has no figures.",
    )
    pool: DnsSubdomain | None = Field(
        default=None, description="The RegionPool that claims this provider, if any."
    )
    last_collection_time: Timestamp | None = Field(
        default=None, description="When the inventory was last collected successfully."
    )
    folded: Folded | None = Field(
        default=None,
        description="Entries that did not fit this status's bounds, summed into remainders.",
    )


# --- the resource ----------------------------------------------------------------------


class ComputeProvider(WireModel):
    """A compute provider (HPC centre, cloud region or member cluster) in one region."""

    model_config = ConfigDict(extra="ignore")

    # Rules on the whole object; the CRD generator puts them on the root schema.
    root_rules: ClassVar[list[dict[str, str]]] = [
        rule(
            f"self.metadata.name.size() <= {NAME_MAX_LENGTH}",
            f"metadata.name must be at most {NAME_MAX_LENGTH} characters (the provider's "
            f"virtual node is named {NODE_NAME_PREFIX}<name>, a 63-character label value)",
            field_path=".metadata.name",
        )
    ]
    printer_columns: ClassVar[list[dict[str, Any]]] = [
        {"name": "Region", "type": "string", "jsonPath": ".spec.region"},
        {"name": "Pool", "type": "string", "jsonPath": ".status.pool"},
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
            "name": "Memory",
            "type": "string",
            "jsonPath": ".status.allocatable.memory",
            "description": "Allocatable memory.",
        },
        {
            "name": "GPU",
            "type": "integer",
            "jsonPath": ".status.acceleratorCount",
            "description": "Allocatable accelerator devices over all models.",
        },
        {"name": "Zone", "type": "string", "jsonPath": ".spec.zone", "priority": 1},
        {"name": "Sector", "type": "string", "jsonPath": ".spec.sector", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]

    api_version: str = Field(default=API_VERSION)
    kind: str = Field(default=KIND)
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: ComputeProviderSpec = Field(description="Desired state, written by the admin.")
    status: ComputeProviderStatus | None = Field(
        default=None, description="Observed state, written by the operator."
    )

    @property
    def name(self) -> str:
        """The object's name (empty if unnamed)."""
        return self.metadata.name or ""

    @property
    def node_name(self) -> str:
        """Name of the provider's virtual node on the host cluster."""
        return f"{NODE_NAME_PREFIX}{self.name}"


CATEGORIES: Final = (CATEGORY,)
