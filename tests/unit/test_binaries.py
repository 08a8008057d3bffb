"""Binary resolution: envtest-style assets win, and the cache is keyed by pins.

``fedcompute generate`` ships and so cannot use the harness: it finds helm (and the
checkout) on its own, in an order tested here too.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fedcompute import deploy
from fedcompute.local import binaries


@pytest.fixture(autouse=True)
def _no_assets_from_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sets the asset variables it means; a developer's own exports don't leak in."""
    for name in (
        "KUBEBUILDER_ASSETS",
        "TEST_ASSET_KUBE_APISERVER",
        "TEST_ASSET_ETCD",
        "TEST_ASSET_KUBECTL",
        "TEST_ASSET_KWOK",
        "TEST_ASSET_HELM",
    ):
        monkeypatch.delenv(name, raising=False)


def _exe(path: Path) -> Path:
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_kubebuilder_assets_are_used_without_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("kube-apiserver", "etcd", "kubectl"):
        _exe(tmp_path / name)
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(tmp_path))
    monkeypatch.setenv("PATH", "/nonexistent")  # no go on PATH: building would fail
    monkeypatch.setenv("FEDCOMPUTE_CACHE_DIR", str(tmp_path / "cache"))
    assert binaries.kube_apiserver() == tmp_path / "kube-apiserver"
    assert binaries.etcd() == tmp_path / "etcd"
    assert binaries.kubectl() == tmp_path / "kubectl"
    assert binaries.kwok(required=False) is None
    with pytest.raises(binaries.BinaryError, match="KUBEBUILDER_ASSETS"):
        binaries.kwok(required=True)


def test_specific_test_asset_variables_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    api = _exe(tmp_path / "my-apiserver")
    etcd = _exe(tmp_path / "my-etcd")
    monkeypatch.setenv("TEST_ASSET_KUBE_APISERVER", str(api))
    monkeypatch.setenv("TEST_ASSET_ETCD", str(etcd))
    monkeypatch.setenv("PATH", "/nonexistent")
    assert binaries.kube_apiserver() == api
    assert binaries.etcd() == etcd


def test_a_non_executable_asset_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = tmp_path / "etcd"
    plain.write_text("not a program")
    monkeypatch.setenv("TEST_ASSET_ETCD", str(plain))
    with pytest.raises(binaries.BinaryError, match="not an executable"):
        binaries.etcd()


def test_pin_key_changes_with_the_wrapper_module(tmp_path: Path) -> None:
    (tmp_path / "go.mod").write_text("module x\nrequire k8s.io/kubernetes v1.34.4\n")
    first = binaries._pin_key("v1.34.4", tmp_path)
    assert first == binaries._pin_key("v1.34.4", tmp_path)
    (tmp_path / "go.mod").write_text("module x\nrequire k8s.io/kubernetes v1.34.5\n")
    assert binaries._pin_key("v1.34.4", tmp_path) != first
    assert binaries._pin_key("v1.34.5", None) != binaries._pin_key("v1.34.4", None)


def test_version_ldflags_stamp_both_version_packages() -> None:
    flags = binaries._kube_ldflags()
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        assert f"-X {pkg}.gitVersion={binaries.KUBERNETES_VERSION}" in flags
        assert f"-X {pkg}.gitMinor=34" in flags


def test_kueue_is_a_pinned_test_tool_built_from_the_upstream_main(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hack/kueue has no main.go: its go.mod's tool directive names Kueue's own
    cmd/kueue, which is what gets built; a prebuilt one wins."""
    built: list[tuple[str, str, str]] = []

    def fake_build(name: str, version: str, ldflags: str, **kwargs: str) -> Path:
        built.append((version, ldflags, kwargs["package"]))
        return tmp_path / name

    monkeypatch.delenv("TEST_ASSET_KUEUE", raising=False)
    monkeypatch.setattr(binaries, "_build_wrapper", fake_build)
    assert binaries.kueue() == tmp_path / "kueue"
    ((version, ldflags, package),) = built
    assert version == binaries.KUEUE_VERSION == binaries.TEST_TOOLS["kueue"]
    assert package == "sigs.k8s.io/kueue/cmd/kueue"
    assert ldflags.split()[:2] == ["-s", "-w"]
    assert f"sigs.k8s.io/kueue/pkg/version.GitVersion={binaries.KUEUE_VERSION}" in ldflags
    prebuilt = _exe(tmp_path / "my-kueue")
    monkeypatch.setenv("TEST_ASSET_KUEUE", str(prebuilt))
    assert binaries.kueue() == prebuilt
    assert len(built) == 1


def test_kueue_wrapper_module_pins_what_the_harness_expects() -> None:
    """hack/kueue/go.mod (what `go build` and `go mod download` resolve) and the
    constants that name the pins agree."""
    from fedcompute.local import thirdparty

    root = Path(__file__).resolve().parents[2]
    gomod = (root / "hack" / "kueue" / "go.mod").read_text()
    assert "\ntool sigs.k8s.io/kueue/cmd/kueue\n" in gomod
    assert f"\tsigs.k8s.io/kueue {binaries.KUEUE_VERSION}" in gomod
    inventory = (
        f"\t{thirdparty.CLUSTER_INVENTORY_API_MODULE} {thirdparty.CLUSTER_INVENTORY_API_VERSION}"
    )
    assert inventory in gomod
    gosum = (root / "hack" / "kueue" / "go.sum").read_text()
    assert f"sigs.k8s.io/kueue {binaries.KUEUE_VERSION} h1:" in gosum


# --- `fedcompute generate` finds helm and the checkout without the harness --------------


def test_generate_finds_helm_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--helm, then $TEST_ASSET_HELM, then beside the venv's python, then PATH."""
    (tmp_path / "venv").mkdir()
    (tmp_path / "path").mkdir()
    explicit = _exe(tmp_path / "explicit-helm")
    asset = _exe(tmp_path / "asset-helm")
    beside = _exe(tmp_path / "venv" / "helm")
    on_path = _exe(tmp_path / "path" / "helm")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "venv" / "python"))
    monkeypatch.setenv("PATH", str(tmp_path / "path"))
    monkeypatch.setenv("TEST_ASSET_HELM", str(asset))
    assert deploy.find_helm(explicit) == str(explicit)
    assert deploy.find_helm() == str(asset)
    monkeypatch.delenv("TEST_ASSET_HELM")
    assert deploy.find_helm() == str(beside)
    beside.unlink()
    assert deploy.find_helm() == str(on_path)
    on_path.unlink()
    with pytest.raises(deploy.GenerateError, match="make binaries"):
        deploy.find_helm()


def test_generate_refuses_a_named_helm_that_is_not_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A helm named on purpose is never silently swapped for another one."""
    monkeypatch.setattr(sys, "executable", str(_exe(tmp_path / "python")))
    _exe(tmp_path / "helm")
    with pytest.raises(deploy.GenerateError, match=r"--helm=.*not an executable"):
        deploy.find_helm(tmp_path / "missing")
    monkeypatch.setenv("TEST_ASSET_HELM", str(tmp_path / "missing"))
    with pytest.raises(deploy.GenerateError, match=r"TEST_ASSET_HELM=.*not an executable"):
        deploy.find_helm()


def test_generate_finds_the_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$FEDCOMPUTE_SOURCE_DIR, else this module's checkout, else the current directory."""
    checkout = tmp_path / "checkout"
    (checkout / deploy.CHART).mkdir(parents=True)
    (checkout / deploy.CHART / "Chart.yaml").write_text("name: fedcompute\n")
    monkeypatch.delenv("FEDCOMPUTE_SOURCE_DIR", raising=False)
    assert deploy.source_root() == Path(__file__).resolve().parents[2]
    # Installed outside a checkout (a wheel): the current directory decides.
    monkeypatch.setattr(deploy, "__file__", str(tmp_path / "site" / "fedcompute" / "deploy.py"))
    monkeypatch.chdir(checkout)
    assert deploy.source_root() == checkout
    monkeypatch.chdir(tmp_path)
    with pytest.raises(deploy.GenerateError, match="--root"):
        deploy.source_root()
    monkeypatch.setenv("FEDCOMPUTE_SOURCE_DIR", str(checkout))
    assert deploy.source_root() == checkout
    monkeypatch.setenv("FEDCOMPUTE_SOURCE_DIR", str(tmp_path))
    with pytest.raises(deploy.GenerateError):
        deploy.source_root()
