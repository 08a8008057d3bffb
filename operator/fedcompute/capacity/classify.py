"""Which of a member's resources and DRA devices are accelerators, and of what model. Pure.

With no configuration every vendor of :mod:`fedcompute.capacity.vendors` is recognised, per
node: a member mixing NVIDIA, Ascend and Hygon nodes is counted per model. A provider's
``acceleratorResources`` replaces the table's resource names (a resource the table does not
know is attributed to the vendor its domain names, ``example.com``), and its
``acceleratorModelLabel`` is read before the vendor's own labels. Their old CRD defaults
(``nvidia.com/gpu`` and ``nvidia.com/gpu.product``) mean "not configured": the vendor table
reads NVIDIA's nodes the same way and every other vendor's too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from fedcompute.capacity import vendors

OLD_DEFAULT_RESOURCES: Final = ("nvidia.com/gpu",)
OLD_DEFAULT_MODEL_LABEL: Final = "nvidia.com/gpu.product"


def _domain(resource: str) -> str:
    return resource.split("/", 1)[0] if "/" in resource else resource


def _partition_model(vendor: vendors.Vendor, resource: str, model: str) -> str:
    """``model`` (the parent device's) named for one unit of a partition resource."""
    if not vendors.is_partition(resource):
        return vendors.normalize_model(model)
    if not vendor.model_labels:  # no label to name the parent by: append the partition
        return vendors.normalize_model(f"{model}-{resource.split('/', 1)[-1]}")
    named = vendors.model_label_for(resource, {vendor.model_labels[0]: model})
    return named or vendors.normalize_model(model)


def _attribute(attributes: Mapping[str, object], driver: str, name: str) -> str:
    value = attributes.get(name, attributes.get(f"{driver}/{name}"))
    if isinstance(value, bool) or value is None:
        return ""
    return str(value).strip()


class VendorClassifier:
    """The vendor table, with a provider's overrides (see the module docstring)."""

    def __init__(
        self, *, model_label: str | None = None, resources: Sequence[str] | None = None
    ) -> None:
        if model_label == OLD_DEFAULT_MODEL_LABEL:
            model_label = None
        if resources is not None and tuple(resources) == OLD_DEFAULT_RESOURCES:
            resources = None
        self._label = model_label
        self._resources = frozenset(resources) if resources is not None else None
        self._vendors: dict[str, vendors.Vendor | None] = {}

    def _vendor(self, resource: str) -> vendors.Vendor | None:
        if resource not in self._vendors:
            self._vendors[resource] = vendors.vendor_of_resource(resource)
        return self._vendors[resource]

    def resource(self, name: str, labels: Mapping[str, str]) -> tuple[str, str] | None:
        """``(vendor, model)`` of extended resource ``name`` on a node with ``labels``;
        None when it is no accelerator. ``""`` is a model that cannot be told."""
        if self._resources is not None and name not in self._resources:
            return None
        vendor = self._vendor(name)
        if vendor is None:
            if self._resources is None:
                return None
            label = labels.get(self._label, "") if self._label else ""
            return _domain(name), vendors.normalize_model(label) if label.strip() else ""
        if self._label:
            label = labels.get(self._label, "")
            if label.strip():
                return vendor.name, _partition_model(vendor, name, label)
        return vendor.name, vendors.model_label_for(name, labels) or ""

    def device(self, driver: str, attributes: Mapping[str, object]) -> tuple[str, str] | None:
        """``(vendor, model)`` of a DRA device; None for drivers of no known accelerator
        vendor (network cards, storage). A MIG device is named ``<model>-MIG-<profile>``
        and a partition ``<model>-<type>``, so a whole device's figures never apply."""
        vendor = vendors.vendor_of_driver(driver)
        if vendor is None:
            return None
        model = ""
        for name in vendor.dra_model_attributes:
            model = _attribute(attributes, driver, name)
            if model:
                break
        if not model:
            return vendor.name, ""
        kind = _attribute(attributes, driver, "type").lower()
        if kind == "mig":
            profile = _attribute(attributes, driver, "profile")
            model = f"{model}-MIG-{profile}" if profile else f"{model}-MIG"
        elif "partition" in kind:
            profile = _attribute(attributes, driver, "profile") or kind
            model = f"{model}-{profile}"
        return vendor.name, vendors.normalize_model(model)
