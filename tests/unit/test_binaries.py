"""Binary resolution: envtest-style assets win, and the cache is keyed by pins."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedcompute.local import binaries


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
