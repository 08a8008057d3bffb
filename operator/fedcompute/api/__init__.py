"""The public API of fedcompute: the ComputeProvider, RegionPool and AcceleratorModel kinds.

The pydantic models in :mod:`fedcompute.api.provider`, :mod:`fedcompute.api.pool` and
:mod:`fedcompute.api.accelerator` are the single source of truth. The
CustomResourceDefinitions (:mod:`fedcompute.api.crds`) and the offline validator
(:mod:`fedcompute.api.validation`) are derived from them, so a rule is written once.
Everything here is pure: no API clients, no I/O beyond what the CLI commands do.
"""

GROUP = "fedcompute.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "fedcompute"
