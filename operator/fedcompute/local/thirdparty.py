"""Upstream manifests that tests install, taken from the pinned Go modules themselves.

Kueue's CRDs, the conversion-webhook patches its kustomization enables and its webhook
configurations come from the ``sigs.k8s.io/kueue`` module that ``hack/kueue/go.mod``
pins (the same module the ``kueue`` test tool is built from); the ClusterProfile CRD
(SIG-Multicluster's cluster-inventory-api) comes from the ``sigs.k8s.io/cluster-inventory-api``
version that Kueue itself requires, which the same go.mod and go.sum pin. Nothing is
written by hand.

``go mod download`` fetches a module into Go's module cache (``GOMODCACHE``, with the
``GOFLAGS`` and proxy settings the binaries are built with) once, verifies it against
``go.sum``, and answers from the cache afterwards; each process asks once per module.
Without Go or outside a checkout, :class:`~fedcompute.local.binaries.BinaryError` says so.
"""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path

import yaml

from fedcompute.local import binaries

KUEUE_MODULE = "sigs.k8s.io/kueue"
CLUSTER_INVENTORY_API_MODULE = "sigs.k8s.io/cluster-inventory-api"
# The version sigs.k8s.io/kueue v0.17.0's go.mod requires (and hack/kueue/go.mod records).
CLUSTER_INVENTORY_API_VERSION = "v0.0.0-20251028164203-2e3fabb46733"
_WRAPPER = "kueue"
_ALTERNATIVE = "run from a source checkout with Go on PATH"

# Paths inside the modules.
KUEUE_CRD_DIR = "config/components/crd/bases"
KUEUE_CRD_KUSTOMIZATION = "config/components/crd/kustomization.yaml"
KUEUE_WEBHOOK_MANIFESTS = "config/components/webhook/manifests.yaml"
CLUSTER_PROFILE_CRD = "config/crd/bases/multicluster.x-k8s.io_clusterprofiles.yaml"


@functools.cache
def module_dir(module: str, version: str) -> Path:
    """The unpacked source of ``module`` as ``hack/kueue/go.mod`` pins it, which must be
    ``version`` (a constant here and the go.mod disagreeing is an error, not a guess)."""
    wrapper = binaries._wrapper_dir(_WRAPPER, _ALTERNATIVE)
    go = binaries._go(_ALTERNATIVE)
    done = subprocess.run(
        [go, "mod", "download", "-json", module],
        cwd=wrapper,
        env=binaries._go_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        info = json.loads(done.stdout)
    except ValueError:
        info = {}
    if done.returncode != 0 or info.get("Error") or not info.get("Dir"):
        detail = info.get("Error") or done.stderr.strip() or done.stdout.strip()
        raise binaries.BinaryError(f"cannot fetch {module} with go mod download: {detail}")
    if info.get("Version") != version:
        raise binaries.BinaryError(
            f"hack/{_WRAPPER}/go.mod pins {module} {info.get('Version')}, but fedcompute "
            f"expects {version}: update both together"
        )
    return Path(info["Dir"])


def _file(directory: Path, relative: str) -> Path:
    path = directory / relative
    if not path.is_file():
        raise binaries.BinaryError(f"{relative} not found in {directory}")
    return path


def kueue_dir() -> Path:
    """The pinned Kueue module's source directory (read-only)."""
    return module_dir(KUEUE_MODULE, binaries.KUEUE_VERSION)


def kueue_crds() -> list[Path]:
    """Kueue's CRD files (``config/components/crd/bases``), sorted by name."""
    directory = kueue_dir() / KUEUE_CRD_DIR
    found = sorted(directory.glob("kueue.x-k8s.io_*.yaml"))
    if not found:
        raise binaries.BinaryError(f"no Kueue CRDs in {directory}")
    return found


def kueue_conversion_patches() -> list[Path]:
    """The CRD patches Kueue's own kustomization applies (``webhook_in_*.yaml``: the
    conversion webhooks between v1beta1 and v1beta2), in its order."""
    root = kueue_dir()
    kustomization = yaml.safe_load(_file(root, KUEUE_CRD_KUSTOMIZATION).read_text())
    base = root / Path(KUEUE_CRD_KUSTOMIZATION).parent
    patches = [entry["path"] for entry in kustomization.get("patches") or [] if "path" in entry]
    return [_file(base, path) for path in patches]


def kueue_webhook_manifests() -> Path:
    """Kueue's Mutating- and ValidatingWebhookConfiguration (before kustomize names them)."""
    return _file(kueue_dir(), KUEUE_WEBHOOK_MANIFESTS)


def cluster_profile_crd() -> Path:
    """The ClusterProfile CRD (``multicluster.x-k8s.io/v1alpha1``) at the version Kueue
    requires."""
    directory = module_dir(CLUSTER_INVENTORY_API_MODULE, CLUSTER_INVENTORY_API_VERSION)
    return _file(directory, CLUSTER_PROFILE_CRD)
