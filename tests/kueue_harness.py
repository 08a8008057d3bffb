"""Kueue's own controller manager, pinned, against a local control plane, for tests.

:func:`running_kueue` installs Kueue's CRDs and webhook configurations (taken from the
pinned ``sigs.k8s.io/kueue`` module by :mod:`fedcompute.local.thirdparty`, never written
by hand) on a cluster of the harness, starts the ``kueue`` binary (built by
:func:`fedcompute.local.binaries.kueue` from ``hack/kueue``) with a generated
``config.kueue.x-k8s.io/v1beta2`` Configuration, waits until it is ready and its webhooks
answer, and stops it on exit. :func:`install_cluster_profile_crd` installs SIG-Multicluster's
ClusterProfile CRD at the version Kueue requires.

How Kueue runs here, and why:

- **Webhooks are served**, as in a real installation: Kueue defaults and validates its
  own objects (Workloads, ClusterQueues, ResourceFlavors...) and converts between
  v1beta1 and v1beta2 in webhooks. Kueue's ``manifests.yaml`` and the conversion
  patches its CRD kustomization enables are applied with every ``clientConfig.service``
  rewritten to ``url: https://127.0.0.1:<port><path>`` (the API server reaches no
  Service here) and Kueue's webhook server bound to that loopback port.
- **The certificate is Kueue's internal certificate management's own**, pre-seeded:
  ``internalCertManagement.enable: false`` cannot be used, because Kueue v0.17.0 then
  loads its metrics certificate from the hard-coded ``/etc/kueue/metrics/certs`` and
  exits without it (cmd/kueue/main.go), and a test must not write to /etc. So Kueue's
  certificate rotator stays on, and the harness gives it, in the Secret
  ``kueue-system/kueue-webhook-server-cert`` it reads, a CA and a serving certificate it
  accepts as valid (an RSA CA with the DNS name ``kueue-ca``, as the rotator checks; a
  serving certificate for ``kueue-webhook-service.kueue-system.svc``), the latter also
  valid for ``127.0.0.1``, the address the API server dials. The rotator keeps them,
  injects the CA into the webhook configurations and CRDs itself, and Kueue serves the
  same files from ``webhook.certDir``; the harness checks that the Secret is unchanged
  once Kueue is ready (a regenerated certificate would lack 127.0.0.1).
- Leader election off; health and metrics on free loopback ports;
  ``integrations.frameworks: [batch/job]`` (disabled frameworks get Kueue's no-op
  webhooks) with ``manageJobsWithoutQueueName: false``; the visibility API server
  (feature gate ``VisibilityOnDemand``) off, since it would bind a fixed port on every
  interface and needs an APIService nobody here uses.

On exit the process is stopped and the webhook configurations are deleted (with
``failurePolicy: Fail`` they would otherwise refuse every later write to Pods, Jobs and
Kueue's objects); the CRDs and objects stay (reading them as v1beta1 needs Kueue's
conversion webhook, so only v1beta2 reads work until Kueue runs again). The process is
tied to the test process (it dies with it) and, through its command line, to the
cluster, whose teardown reaps it. One Kueue at a time per cluster: the namespace, the
Secret and the webhook configurations have fixed names, as in a real installation.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import ctypes
import datetime
import ipaddress
import json
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedcompute.local import binaries, pki, processes, thirdparty
from fedcompute.local.cluster import Cluster, free_port
from tests.conftest import missing, require_tool

NAMESPACE = "kueue-system"  # Kueue's default namespace (config/default: namespace)
NAME_PREFIX = "kueue-"  # config/default: namePrefix
WEBHOOK_SERVICE = "kueue-webhook-service"
WEBHOOK_SECRET = "kueue-webhook-server-cert"
# What Kueue's certificate rotator expects of the CA it finds in the Secret.
_CA_NAME = "kueue-ca"
_CA_ORGANIZATION = "kueue"
_VALIDITY = datetime.timedelta(days=365)  # the rotator renews anything within 90 days
_PR_SET_PDEATHSIG = 1
Json = dict[str, Any]
T = TypeVar("T")


class KueueError(RuntimeError):
    """Kueue could not be installed or started."""


@dataclass(frozen=True)
class Kueue:
    """A running Kueue controller manager and where it keeps its files."""

    cluster: Cluster
    directory: Path
    process: subprocess.Popen[bytes]
    health_port: int
    metrics_port: int
    webhook_port: int

    @property
    def log_path(self) -> Path:
        return self.directory / "kueue.log"

    def log_tail(self, lines: int = 60) -> str:
        """The end of Kueue's log (for assertion messages)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def alive(self) -> bool:
        return self.process.poll() is None


# --- artefacts from the pinned modules ----------------------------------------------------


def _module_file(find: Callable[[], T]) -> T:
    """``find()``, or skip (fail under CI) when the pinned module cannot be had."""
    try:
        return find()
    except (binaries.BinaryError, OSError) as exc:
        missing(f"the pinned Kueue module is not available: {exc}")


def _documents(path: Path) -> list[Json]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _url(port: int, path: str) -> str:
    return f"https://127.0.0.1:{port}{path}"


def kueue_crds(port: int, ca_bundle: bytes) -> list[Json]:
    """Kueue's CRDs with the conversion webhooks its kustomization enables, pointed at
    ``https://127.0.0.1:<port>`` and trusting ``ca_bundle``."""
    crds = {d["metadata"]["name"]: d for p in thirdparty.kueue_crds() for d in _documents(p)}
    for patch_file in thirdparty.kueue_conversion_patches():
        for patch in _documents(patch_file):
            conversion = copy.deepcopy(patch["spec"]["conversion"])
            config = conversion["webhook"]["clientConfig"]
            service = config.pop("service")
            config["url"] = _url(port, service.get("path", "/"))
            config["caBundle"] = base64.b64encode(ca_bundle).decode()
            crds[patch["metadata"]["name"]]["spec"]["conversion"] = conversion
    return list(crds.values())


def _merge_webhook_patch(config: Json, patch: Json) -> None:
    """A strategic-merge patch of webhooks by name, as kustomize applies Kueue's."""
    by_name = {w["name"]: w for w in config.get("webhooks") or []}
    for entry in patch.get("webhooks") or []:
        target = by_name.get(entry["name"])
        if target is not None:
            target.update({k: v for k, v in entry.items() if k != "name"})


def kueue_webhook_configurations(port: int, ca_bundle: bytes) -> list[Json]:
    """Kueue's Mutating- and ValidatingWebhookConfiguration as its default install names
    and patches them, each webhook's service rewritten to a loopback URL."""
    configs = _documents(thirdparty.kueue_webhook_manifests())
    kustomization = yaml.safe_load(
        (thirdparty.kueue_webhook_manifests().parent / "kustomization.yaml").read_text()
    )
    patches = [
        yaml.safe_load(p["patch"]) for p in kustomization.get("patches") or [] if "patch" in p
    ]
    for config in configs:
        for patch in patches:
            if (patch["kind"], patch["metadata"]["name"]) == (
                config["kind"],
                config["metadata"]["name"],
            ):
                _merge_webhook_patch(config, patch)
        config["metadata"]["name"] = NAME_PREFIX + config["metadata"]["name"]
        for webhook in config["webhooks"]:
            client = webhook["clientConfig"]
            service = client.pop("service")
            client["url"] = _url(port, service.get("path", "/"))
            client["caBundle"] = base64.b64encode(ca_bundle).decode()
    return configs


# --- certificates the rotator accepts ---------------------------------------------------


def _rsa_pem(key: rsa.RSAPrivateKey) -> bytes:
    # PKCS#1 ("RSA PRIVATE KEY"): the only form the rotator parses for its CA key.
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def webhook_certificates() -> tuple[pki.KeyPair, pki.KeyPair]:
    """(CA, serving) key pairs for Kueue's webhook server: the CA as Kueue's rotator would
    make it, the serving certificate valid for the webhook Service's DNS name (which the
    rotator verifies) and 127.0.0.1 (which the API server dials)."""
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, _CA_NAME),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _CA_ORGANIZATION),
        ]
    )
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(_CA_NAME)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    dns = f"{WEBHOOK_SERVICE}.{NAMESPACE}.svc"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(dns), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return (
        pki.KeyPair(ca_cert.public_bytes(pem), _rsa_pem(ca_key)),
        pki.KeyPair(cert.public_bytes(pem), _rsa_pem(key)),
    )


def _secret(ca: pki.KeyPair, serving: pki.KeyPair) -> Json:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": WEBHOOK_SECRET, "namespace": NAMESPACE},
        "data": {
            "ca.crt": b64(ca.cert),
            "ca.key": b64(ca.key),
            "tls.crt": b64(serving.cert),
            "tls.key": b64(serving.key),
        },
    }


# --- the Configuration --------------------------------------------------------------------


def configuration(
    directory: Path,
    *,
    health_port: int,
    metrics_port: int,
    webhook_port: int,
    frameworks: tuple[str, ...] = ("batch/job",),
) -> Json:
    """Kueue's Configuration for one loopback run."""
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": NAMESPACE,
        "manageJobsWithoutQueueName": False,
        "leaderElection": {"leaderElect": False},
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
        "metrics": {"bindAddress": f"127.0.0.1:{metrics_port}"},
        "webhook": {"host": "127.0.0.1", "port": webhook_port, "certDir": str(directory / "certs")},
        "internalCertManagement": {
            "enable": True,
            "webhookServiceName": WEBHOOK_SERVICE,
            "webhookSecretName": WEBHOOK_SECRET,
        },
        "clientConnection": {"qps": 50, "burst": 100},
        "integrations": {"frameworks": list(frameworks)},
        "featureGates": {"VisibilityOnDemand": False},
    }


# --- installing ------------------------------------------------------------------------------


def _apply(cluster: Cluster, objects: list[Json]) -> None:
    # Server-side: Kueue's Workload CRD is far beyond client-side apply's annotation limit.
    cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=fedcompute-tests",
        "-f",
        "-",
        input="\n---\n".join(json.dumps(o) for o in objects),
    )


def _wait_established(cluster: Cluster, crds: list[Json], timeout: float = 60) -> None:
    names = [f"crd/{c['metadata']['name']}" for c in crds]
    cluster.kubectl("wait", "--for=condition=Established", f"--timeout={timeout:.0f}s", *names)


def install_cluster_profile_crd(cluster: Cluster) -> Json:
    """Install SIG-Multicluster's ClusterProfile CRD (the version Kueue v0.17.0 requires)
    and wait until it is served; returns the CRD as installed."""
    path = _module_file(thirdparty.cluster_profile_crd)
    crds = _documents(path)
    _apply(cluster, crds)
    _wait_established(cluster, crds)
    return crds[0]


_LIBC = ctypes.CDLL("libc.so.6", use_errno=True)  # loaded here, not between fork and exec


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the test process dies, however it dies."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
            return int(response.status)
    except OSError:
        return 0


def _webhooks_answer(cluster: Cluster) -> bool:
    """Whether the API server reaches Kueue's webhooks: a dry-run create of a
    ResourceFlavor passes its mutating and validating webhooks (failurePolicy Fail)."""
    probe = {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "ResourceFlavor",
        "metadata": {"name": "fedcompute-webhook-probe"},
    }
    done = cluster.kubectl(
        "create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(probe), check=False
    )
    return done.returncode == 0


@contextlib.contextmanager
def running_kueue(
    cluster: Cluster,
    *,
    frameworks: tuple[str, ...] = ("batch/job",),
    timeout: float = 90.0,
) -> Iterator[Kueue]:
    """Install Kueue on ``cluster``, run its controller manager, and stop it on exit.

    Skips (fails under CI) when the kueue binary or the pinned module cannot be had.
    """
    binary = require_tool("kueue", binaries.kueue)
    _module_file(thirdparty.kueue_dir)
    index = 0
    while (cluster.directory / f"kueue-{index}").exists():
        index += 1
    # Inside the cluster's directory: the command line names it, so the cluster's
    # teardown reaps a Kueue that outlived its test.
    directory = cluster.directory / f"kueue-{index}"
    (directory / "certs").mkdir(parents=True)
    health_port, metrics_port, webhook_port = free_port(), free_port(), free_port()

    ca, serving = webhook_certificates()
    pki.write_private(directory / "certs" / "tls.crt", serving.cert)
    pki.write_private(directory / "certs" / "tls.key", serving.key)
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    crds = kueue_crds(webhook_port, ca.cert)
    webhooks = kueue_webhook_configurations(webhook_port, ca.cert)
    _apply(cluster, [namespace, _secret(ca, serving), *crds])
    _wait_established(cluster, crds)
    config = configuration(
        directory,
        health_port=health_port,
        metrics_port=metrics_port,
        webhook_port=webhook_port,
        frameworks=frameworks,
    )
    (directory / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    kueue: Kueue | None = None
    try:
        _apply(cluster, webhooks)
        with open(directory / "kueue.log", "ab") as log:
            process = subprocess.Popen(
                [
                    binary,
                    f"--config={directory / 'config.yaml'}",
                    f"--kubeconfig={cluster.kubeconfig}",
                    "--zap-log-level=info",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - one syscall, libc preloaded
                close_fds=True,
            )
        kueue = Kueue(cluster, directory, process, health_port, metrics_port, webhook_port)
        _wait_ready(kueue, timeout)
        _check_certificate_kept(cluster, serving)
        yield kueue
    finally:
        if kueue is not None:
            processes.terminate([kueue.process.pid], str(directory), grace=15)
            kueue.process.wait()
        names = [f"{w['kind'].lower()}/{w['metadata']['name']}" for w in webhooks]
        cluster.kubectl("delete", "--ignore-not-found", "--wait=false", *names, check=False)


def _wait_ready(kueue: Kueue, timeout: float) -> None:
    """Until /readyz answers (webhook server started, certificates ready) and the API
    server gets through to the webhooks."""
    deadline = time.monotonic() + timeout
    ready = False
    while time.monotonic() < deadline:
        if not kueue.alive():
            raise KueueError(
                f"kueue exited with code {kueue.process.returncode}:\n{kueue.log_tail()}"
            )
        ready = ready or _get(f"http://127.0.0.1:{kueue.health_port}/readyz") == 200
        if ready and _webhooks_answer(kueue.cluster):
            return
        time.sleep(0.25)
    raise KueueError(f"kueue not ready after {timeout:.0f}s (readyz: {ready}):\n{kueue.log_tail()}")


def _check_certificate_kept(cluster: Cluster, serving: pki.KeyPair) -> None:
    """Kueue's rotator kept the harness's serving certificate (one it made itself would
    not be valid for 127.0.0.1, and the webhooks would fail after its next sync)."""
    done = cluster.kubectl("get", "secret", "-n", NAMESPACE, WEBHOOK_SECRET, "-o", "json")
    data = json.loads(done.stdout)["data"]
    if base64.b64decode(data["tls.crt"]) != serving.cert:
        raise KueueError("Kueue's certificate rotator replaced the harness's certificate")
