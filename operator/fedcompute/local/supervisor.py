"""The owner process of one local cluster: ``python -m fedcompute.local.supervisor DIR``.

It starts etcd, kube-apiserver, (when asked) kube-controller-manager and (when available)
kwok as its children, waits for each to be healthy, records their PIDs in
``DIR/state.json``, then watches them. Children are
started with PR_SET_PDEATHSIG, so if the supervisor is killed outright they die with it;
``fedcompute local`` notices the dead supervisor and removes what is left. SIGTERM stops
the children in reverse order and exits.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from fedcompute.local import state as statefile

_PR_SET_PDEATHSIG = 1
_stopping = False


def _die_with_parent() -> None:
    """Run in the child before exec: receive SIGKILL when the supervisor dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _on_signal(signum: int, frame: object) -> None:
    global _stopping  # noqa: PLW0603 - set from the signal handler, read by the loop
    _stopping = True


def _wait_http(
    url: str,
    *,
    context: ssl.SSLContext | None,
    timeout: float,
    healthy: Callable[[str], bool] = lambda body: True,
    child: tuple[str, subprocess.Popen[bytes]] | None = None,
) -> None:
    """Poll ``url`` until it answers 200 with a body ``healthy`` accepts; give up early
    when ``child`` (the name and process serving it) has exited."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline and not _stopping:
        if child is not None and child[1].poll() is not None:
            raise RuntimeError(f"{child[0]} exited with code {child[1].returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as r:  # noqa: S310
                body = r.read().decode(errors="replace")
                if r.status == 200 and healthy(body):
                    return
                last = body.strip()
        except Exception as exc:
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"{url} not healthy after {timeout:.0f}s: {last}")


def _start(name: str, argv: list[str], logs: Path) -> subprocess.Popen[bytes]:
    log: IO[bytes] = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - lives with the child
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent,  # noqa: PLW1509 - single-threaded supervisor
        close_fds=True,
    )


FEATURE_GATES = "DRADeviceTaints=true,DRAPartitionableDevices=true,DRAExtendedResource=true"
"""Alpha DRA fields that member clusters with real accelerator fleets turn on: without
them kube-apiserver 1.34 silently drops device taints, shared counters and a DeviceClass's
extendedResourceName when it stores an object, and the figures' rules for them could not
be tested against a real API server."""


def _apiserver_args(spec: dict[str, Any], d: Path) -> list[str]:
    pki = d / "pki"
    ports = spec["ports"]
    return [
        spec["binaries"]["kube-apiserver"],
        f"--etcd-servers=http://127.0.0.1:{ports['etcd']}",
        f"--cert-dir={pki}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--secure-port={ports['apiserver']}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        "--service-cluster-ip-range=10.0.0.0/24",
        "--allow-privileged=true",
        "--authorization-mode=RBAC",
        "--disable-admission-plugins=ServiceAccount",
        f"--service-account-issuer=https://{spec['name']}.fedcompute.local",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--enable-priority-and-fairness=false",
        f"--feature-gates={FEATURE_GATES}",
        "--profiling=false",
        "--v=1",
    ]


def _etcd_args(spec: dict[str, Any], d: Path) -> list[str]:
    ports = spec["ports"]
    client = f"http://127.0.0.1:{ports['etcd']}"
    peer = f"http://127.0.0.1:{ports['etcd_peer']}"
    return [
        spec["binaries"]["etcd"],
        f"--data-dir={d / 'etcd'}",
        "--name=default",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=default={peer}",
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    ]


# What each of the two controllers is called in the controller manager's health checks.
_CONTROLLER_CHECKS = ("node-lifecycle-controller", "garbage-collector-controller")


def _controller_manager_args(spec: dict[str, Any], d: Path) -> list[str]:
    """Only the two controllers, one process, one identity: no leader election (one
    replica), no per-controller service-account tokens (the harness's certificate
    carries the rights), and secure serving on loopback with a certificate from the
    cluster's CA. /healthz needs no credentials (it is always allowed), so no
    authentication or authorization kubeconfig is given."""
    pki = d / "pki"
    manager = spec["controllerManager"]
    return [
        spec["binaries"]["kube-controller-manager"],
        f"--kubeconfig={d / 'controller-manager.kubeconfig'}",
        f"--controllers={','.join(manager['controllers'])}",
        "--leader-elect=false",
        "--use-service-account-credentials=false",
        f"--node-monitor-grace-period={manager['nodeMonitorGracePeriod']}",
        f"--node-monitor-period={manager['nodeMonitorPeriod']}",
        f"--node-startup-grace-period={manager['nodeStartupGracePeriod']}",
        "--bind-address=127.0.0.1",
        f"--secure-port={spec['ports']['controller_manager']}",
        f"--tls-cert-file={pki / 'controller-manager.crt'}",
        f"--tls-private-key-file={pki / 'controller-manager.key'}",
        "--profiling=false",
        "--v=1",
    ]


def _controllers_started(body: str) -> bool:
    """Each controller adds its health check once started; /healthz says ok before."""
    return all(f"[+]{name} ok" in body for name in _CONTROLLER_CHECKS)


def _kwok_args(spec: dict[str, Any], d: Path) -> list[str]:
    (d / "kwok.yaml").write_text(
        "apiVersion: config.kwok.x-k8s.io/v1alpha1\nkind: KwokConfiguration\noptions: {}\n"
    )
    return [
        spec["binaries"]["kwok"],
        f"--kubeconfig={d / 'kubeconfig'}",
        f"--config={d / 'kwok.yaml'}",
        "--manage-all-nodes=false",
        "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
        "--node-lease-duration-seconds=40",
        "--cidr=10.244.0.1/16",
    ]


def run(directory: Path) -> int:
    """Start the cluster in ``directory`` and supervise it until told to stop."""
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    spec = json.loads((directory / "cluster.json").read_text())
    logs = directory / "logs"
    logs.mkdir(exist_ok=True)
    children: dict[str, subprocess.Popen[bytes]] = {}
    owner = spec.get("owner_pid")
    owner_marker = spec.get("owner_marker") or ""

    def record(status: str, message: str = "") -> None:
        statefile.write(
            directory,
            {
                "supervisor_pid": os.getpid(),
                "children": {k: p.pid for k, p in children.items()},
                "status": status,
                "message": message,
            },
        )

    tls = ssl.create_default_context(cafile=str(directory / "pki" / "ca.crt"))
    tls.load_cert_chain(directory / "pki" / "admin.crt", directory / "pki" / "admin.key")
    code = 0
    try:
        record("starting")
        children["etcd"] = _start("etcd", _etcd_args(spec, directory), logs)
        record("starting")
        _wait_http(f"http://127.0.0.1:{spec['ports']['etcd']}/health", context=None, timeout=60)
        children["kube-apiserver"] = _start(
            "kube-apiserver", _apiserver_args(spec, directory), logs
        )
        record("starting")
        _wait_http(f"{spec['server']}/readyz", context=tls, timeout=120)
        if spec.get("controllerManager"):
            children["kube-controller-manager"] = _start(
                "kube-controller-manager", _controller_manager_args(spec, directory), logs
            )
        if spec["binaries"].get("kwok"):
            children["kwok"] = _start("kwok", _kwok_args(spec, directory), logs)
        record("starting")
        if spec.get("controllerManager"):
            _wait_http(
                f"https://127.0.0.1:{spec['ports']['controller_manager']}/healthz?verbose",
                context=ssl.create_default_context(cafile=str(directory / "pki" / "ca.crt")),
                timeout=90,
                healthy=_controllers_started,
                child=("kube-controller-manager", children["kube-controller-manager"]),
            )
        record("ready")
        while not _stopping:
            for name, proc in children.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with code {proc.returncode}")
            if owner and not statefile.owner_alive(owner, owner_marker):
                break
            time.sleep(0.3)
        record("stopping")
    except Exception as exc:  # report any start failure through state.json
        record("failed", str(exc))
        code = 1
    finally:
        for name in ("kwok", "kube-controller-manager", "kube-apiserver", "etcd"):
            child = children.get(name)
            if child is not None and child.poll() is None:
                child.terminate()
                try:
                    child.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
        if code == 0:
            record("stopped")
    return code


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1])))
