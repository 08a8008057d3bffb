"""Vetting member kubeconfigs: what is refused, why, what an accepted one yields, and the
client configuration built from it."""

from __future__ import annotations

import base64
import copy
import ipaddress
import os
import socket
from collections.abc import Callable, Iterable
from typing import Any

import pytest
import urllib3
import yaml
from cryptography.hazmat.primitives import serialization
from kubernetes.client import Configuration

from fedcompute.kube import kubeconfigs, members
from fedcompute.kube.kubeconfigs import INSECURE, INVALID, UNREACHABLE, KubeconfigError
from fedcompute.local import pki

CA = pki.make_ca("member-ca")
CLIENT = pki.make_client(CA, "alice", ("fedcompute",))
OTHER = pki.make_client(CA, "bob")
TOKEN = "tok3n-that-must-never-leak.0123456789abcdef"
EXEC_SECRET = "exec-env-secret-value"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


SECRETS = (
    TOKEN,
    EXEC_SECRET,
    b64(CLIENT.key),
    CLIENT.key.decode(),
    b64(CLIENT.key)[:40],
)

Doc = dict[str, Any]


def base(server: str = "https://127.0.0.1:6443") -> Doc:
    """A valid, self-contained kubeconfig with a client certificate and a token."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "member",
                "cluster": {"server": server, "certificate-authority-data": b64(CA.cert)},
            }
        ],
        "users": [
            {
                "name": "alice",
                "user": {
                    "client-certificate-data": b64(CLIENT.cert),
                    "client-key-data": b64(CLIENT.key),
                    "token": TOKEN,
                },
            }
        ],
        "contexts": [{"name": "member", "context": {"cluster": "member", "user": "alice"}}],
        "current-context": "member",
    }


def dump(doc: Doc) -> str:
    return yaml.safe_dump(doc)


def cluster(doc: Doc) -> dict[str, Any]:
    body: dict[str, Any] = doc["clusters"][0]["cluster"]
    return body


def user(doc: Doc) -> dict[str, Any]:
    body: dict[str, Any] = doc["users"][0]["user"]
    return body


def resolver(*addresses: str) -> kubeconfigs.Resolver:
    """A fake ``getaddrinfo`` answering every name with ``addresses``."""

    def resolve(host: str, port: int) -> Iterable[tuple[Any, ...]]:
        entries: list[tuple[Any, ...]] = []
        for address in addresses:
            if ":" in address:
                entries.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0)))
            else:
                entries.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)))
        return entries

    return resolve


def unresolvable(host: str, port: int) -> Iterable[tuple[Any, ...]]:
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def must_not_resolve(host: str, port: int) -> Iterable[tuple[Any, ...]]:
    raise AssertionError(f"an IP literal must not be resolved (asked for {host})")


def change(edit: Callable[[Doc], object], server: str = "https://127.0.0.1:6443") -> str:
    doc = base(server)
    edit(doc)
    return dump(doc)


def set_in(part: Callable[[Doc], dict[str, Any]], **values: Any) -> Callable[[Doc], None]:
    def edit(doc: Doc) -> None:
        part(doc).update(
            {k.replace("_", "-") if k != "tokenFile" else k: v for k, v in values.items()}
        )

    return edit


def drop(part: Callable[[Doc], dict[str, Any]], *keys: str) -> Callable[[Doc], None]:
    def edit(doc: Doc) -> None:
        for key in keys:
            part(doc).pop(key, None)

    return edit


def encrypted_key(doc: Doc) -> None:
    key = serialization.load_pem_private_key(CLIENT.key, password=None)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    user(doc)["client-key-data"] = b64(pem)


def load(
    text: str,
    resolve: kubeconfigs.Resolver = must_not_resolve,
    deny: tuple[kubeconfigs.IPNetwork, ...] = kubeconfigs.DEFAULT_DENY,
) -> kubeconfigs.SafeKubeconfig:
    return kubeconfigs.load_safe_kubeconfig(text, deny_cidrs=deny, resolve=resolve)


# --- refused as insecure -------------------------------------------------------------------

EXEC = {
    "apiVersion": "client.authentication.k8s.io/v1",
    "command": "sh",
    "args": ["-c", "cat /var/run/secrets/kubernetes.io/serviceaccount/token"],
    "env": [{"name": "SECRET", "value": EXEC_SECRET}],
}

INSECURE_CASES: list[tuple[str, str, str]] = [
    ("exec", change(set_in(user, exec=EXEC)), "users[0].user.exec"),
    (
        "auth-provider",
        change(set_in(user, auth_provider={"name": "oidc", "config": {"client-secret": TOKEN}})),
        "users[0].user.auth-provider",
    ),
    ("tokenFile", change(set_in(user, tokenFile="/etc/passwd")), "users[0].user.tokenFile"),
    (
        "client certificate path",
        change(set_in(user, client_certificate="/etc/ssl/cert.pem")),
        "users[0].user.client-certificate",
    ),
    (
        "client key path",
        change(set_in(user, client_key="/etc/ssl/private/key.pem")),
        "users[0].user.client-key",
    ),
    (
        "basic auth",
        change(set_in(user, username="admin", password=TOKEN)),
        "users[0].user.",
    ),
    (
        "CA path",
        change(set_in(cluster, certificate_authority="/etc/kubernetes/pki/ca.crt")),
        "clusters[0].cluster.certificate-authority",
    ),
    (
        "CA path without CA data",
        change(
            lambda d: (
                drop(cluster, "certificate-authority-data")(d),
                set_in(cluster, certificate_authority="/ca.crt")(d),
            )
        ),
        "clusters[0].cluster.certificate-authority",
    ),
    (
        "no CA data",
        change(drop(cluster, "certificate-authority-data")),
        "clusters[0].cluster.certificate-authority-data",
    ),
    (
        "insecure-skip-tls-verify",
        change(set_in(cluster, insecure_skip_tls_verify=True)),
        "clusters[0].cluster.insecure-skip-tls-verify",
    ),
    (
        "proxy-url",
        change(set_in(cluster, proxy_url="http://proxy.example:3128")),
        "clusters[0].cluster.proxy-url",
    ),
    ("http server", change(lambda d: None, "http://127.0.0.1:8080"), "clusters[0].cluster.server"),
    (
        "credentials in the server URL",
        change(lambda d: None, f"https://admin:{TOKEN}@127.0.0.1:6443"),
        "clusters[0].cluster.server",
    ),
    (
        "IPv4 metadata literal",
        change(lambda d: None, "https://169.254.169.254"),
        "clusters[0].cluster.server",
    ),
    ("Alibaba metadata literal", change(lambda d: None, "https://100.100.100.200:443"), "server"),
    ("AWS IPv6 metadata literal", change(lambda d: None, "https://[fd00:ec2::254]:443"), "server"),
    ("IPv6 link-local literal", change(lambda d: None, "https://[fe80::1]:6443"), "server"),
    (
        "IPv6 link-local literal with a zone",
        change(lambda d: None, "https://[fe80::1%25eth0]:6443"),
        "server",
    ),
    (
        "IPv4-mapped IPv6 metadata literal",
        change(lambda d: None, "https://[::ffff:169.254.169.254]:443"),
        "server",
    ),
    ("unspecified address", change(lambda d: None, "https://0.0.0.0:6443"), "server"),
]


@pytest.mark.parametrize(
    ("text", "field"), [pytest.param(t, f, id=name) for name, t, f in INSECURE_CASES]
)
def test_refused_as_insecure(text: str, field: str) -> None:
    with pytest.raises(KubeconfigError) as caught:
        load(text)
    assert caught.value.reason == INSECURE
    assert field in caught.value.message
    assert_no_secret(caught.value, text)


RESOLVED_CASES: list[tuple[str, tuple[str, ...], tuple[str, ...], str]] = [
    ("metadata by name", ("169.254.169.254",), (), "169.254.169.254"),
    ("one of several addresses denied", ("10.0.0.7", "169.254.169.254"), (), "169.254.169.254"),
    ("IPv6 link-local by name", ("fe80::1%eth0",), (), "fe80::1"),
    ("IPv4-mapped by name", ("::ffff:169.254.169.254",), (), "::ffff:a9fe:a9fe"),
    ("an extra --deny-cidr", ("10.96.0.1",), ("10.96.0.0/12",), "10.96.0.0/12"),
    ("an extra IPv6 --deny-cidr", ("fd12::1",), ("fd12::/16",), "fd12::/16"),
]


@pytest.mark.parametrize(
    ("addresses", "extra", "shown"),
    [pytest.param(a, e, s, id=name) for name, a, e, s in RESOLVED_CASES],
)
def test_refused_when_the_host_resolves_into_a_denied_range(
    addresses: tuple[str, ...], extra: tuple[str, ...], shown: str
) -> None:
    text = change(lambda d: None, "https://api.member.example:6443")
    with pytest.raises(KubeconfigError) as caught:
        load(text, resolver(*addresses), kubeconfigs.deny_list(extra))
    assert caught.value.reason == INSECURE
    assert "clusters[0].cluster.server" in caught.value.message
    assert "api.member.example" in caught.value.message
    assert shown in caught.value.message
    assert_no_secret(caught.value, text)


def test_a_literal_in_an_extra_range_is_refused() -> None:
    text = change(lambda d: None, "https://10.0.0.1:6443")
    load(text)
    with pytest.raises(KubeconfigError) as caught:
        load(text, deny=kubeconfigs.deny_list(["10.0.0.0/8"]))
    assert caught.value.reason == INSECURE


def test_deny_list_rejects_a_bad_cidr() -> None:
    with pytest.raises(ValueError):
        kubeconfigs.deny_list(["10.0.0.0/33"])


# --- refused as invalid --------------------------------------------------------------------


def two_contexts(doc: Doc) -> None:
    doc["contexts"].append({"name": "other", "context": {"cluster": "member", "user": "alice"}})
    del doc["current-context"]


INVALID_CASES: list[tuple[str, str, str]] = [
    ("empty", "", "mapping"),
    ("not YAML", "clusters: [\n  - {name: x\n", "YAML"),
    ("tab indentation", "clusters:\n\t- name: x\n", "YAML"),
    ("a list", "- a\n- b\n", "mapping"),
    ("a scalar", "hello", "mapping"),
    ("wrong kind", change(lambda d: d.update(kind="Pod")), "kind"),
    ("unknown top-level field", change(lambda d: d.update(secrets=[TOKEN])), "'secrets'"),
    ("clusters not a list", change(lambda d: d.update(clusters={"a": 1})), "clusters"),
    ("no contexts", change(lambda d: (d.pop("contexts"), d.pop("current-context"))), "context"),
    ("missing current context", change(lambda d: d.update({"current-context": "x"})), "'x'"),
    ("two contexts and no current one", change(two_contexts), "2 contexts"),
    (
        "context names no cluster",
        change(lambda d: d["contexts"][0]["context"].pop("cluster")),
        "contexts[0].context.cluster",
    ),
    (
        "cluster not found",
        change(lambda d: d["clusters"][0].update(name="elsewhere")),
        "clusters has no entry named 'member'",
    ),
    ("user not found", change(lambda d: d.update(users=[])), "users has no entry named 'alice'"),
    (
        "duplicate clusters",
        change(lambda d: d["clusters"].append(copy.deepcopy(d["clusters"][0]))),
        "2 entries",
    ),
    ("missing server", change(drop(cluster, "server")), "clusters[0].cluster.server"),
    ("not https", change(lambda d: None, "ftp://127.0.0.1"), "clusters[0].cluster.server"),
    ("bad port", change(lambda d: None, "https://127.0.0.1:99999"), "clusters[0].cluster.server"),
    ("no host", change(lambda d: None, "https://:6443"), "clusters[0].cluster.server"),
    ("a query", change(lambda d: None, "https://127.0.0.1/?x=1"), "clusters[0].cluster.server"),
    (
        "bad base64",
        change(set_in(cluster, certificate_authority_data="%%%not-base64%%%")),
        "clusters[0].cluster.certificate-authority-data",
    ),
    (
        "CA not PEM",
        change(set_in(cluster, certificate_authority_data=b64(b"hello"))),
        "clusters[0].cluster.certificate-authority-data",
    ),
    (
        "skip-verify not a boolean",
        change(set_in(cluster, insecure_skip_tls_verify="false")),
        "insecure-skip-tls-verify",
    ),
    (
        "certificate without key",
        change(drop(user, "client-key-data")),
        "client-certificate-data and client-key-data",
    ),
    (
        "key data not base64",
        change(set_in(user, client_key_data="@@@@")),
        "users[0].user.client-key-data",
    ),
    (
        "key not PEM",
        change(set_in(user, client_key_data=b64(b"-----BEGIN PRIVATE KEY-----\nAAAA"))),
        "users[0].user.client-key-data",
    ),
    (
        "key from another pair",
        change(set_in(user, client_key_data=b64(OTHER.key))),
        "does not match",
    ),
    ("encrypted key", change(encrypted_key), "encrypted"),
    (
        "no credentials",
        change(drop(user, "client-certificate-data", "client-key-data", "token")),
        "no credentials",
    ),
    (
        "a token with a line break inside",
        change(set_in(user, token=TOKEN[:10] + "\r\nX-Evil: 1")),
        "users[0].user.token",
    ),
    ("a token that is a number", change(set_in(user, token=12345)), "users[0].user.token"),
    ("impersonation", change(set_in(user, **{"as": "system:admin"})), "users[0].user.as"),
    ("unknown cluster field", change(set_in(cluster, colour="blue")), "clusters[0].cluster.colour"),
]


@pytest.mark.parametrize(
    ("text", "field"), [pytest.param(t, f, id=name) for name, t, f in INVALID_CASES]
)
def test_refused_as_invalid(text: str, field: str) -> None:
    with pytest.raises(KubeconfigError) as caught:
        load(text)
    assert caught.value.reason == INVALID
    assert field in caught.value.message
    assert_no_secret(caught.value, text)


def test_a_yaml_error_does_not_quote_the_document() -> None:
    text = f"users:\n  - token: {TOKEN}\n\tbroken: [\n"
    with pytest.raises(KubeconfigError) as caught:
        load(text)
    assert caught.value.reason == INVALID
    assert "line" in caught.value.message
    assert_no_secret(caught.value, text)


def test_an_oversized_kubeconfig_is_refused() -> None:
    with pytest.raises(KubeconfigError) as caught:
        load("#" * (kubeconfigs.MAX_KUBECONFIG_BYTES + 1))
    assert caught.value.reason == INVALID


def test_an_unresolvable_host_is_unreachable() -> None:
    text = change(lambda d: None, "https://nowhere.invalid:6443")
    with pytest.raises(KubeconfigError) as caught:
        load(text, unresolvable)
    assert caught.value.reason == UNREACHABLE
    assert "nowhere.invalid" in caught.value.message


def test_a_host_without_addresses_is_unreachable() -> None:
    text = change(lambda d: None, "https://nowhere.example:6443")
    with pytest.raises(KubeconfigError) as caught:
        load(text, resolver())
    assert caught.value.reason == UNREACHABLE


def assert_no_secret(error: KubeconfigError, text: str) -> None:
    shown = f"{error}\n{error.message}\n{error!r}"
    for secret in SECRETS:
        assert secret not in shown
    if len(text) > 20:
        assert text not in shown
    assert error.__cause__ is None


# --- accepted ------------------------------------------------------------------------------


def test_an_accepted_kubeconfig() -> None:
    safe = load(dump(base()))
    assert safe.server == "https://127.0.0.1:6443"
    assert (safe.host, safe.port, safe.addresses) == ("127.0.0.1", 6443, ("127.0.0.1",))
    assert safe.ca_data == CA.cert
    assert safe.client_cert_data == CLIENT.cert
    assert safe.client_key_data == CLIENT.key
    assert safe.token == TOKEN
    assert safe.tls_server_name is None
    assert safe.path == ""
    for secret in SECRETS:
        assert secret not in repr(safe)


def test_a_host_name_is_resolved_and_pinned() -> None:
    def edit(doc: Doc) -> None:
        cluster(doc)["tls-server-name"] = "API.Member.Example"
        drop(user, "client-certificate-data", "client-key-data")(doc)

    text = change(edit, "https://API.member.example/k8s/clusters/c-1/")
    safe = load(text, resolver("10.0.0.5", "10.0.0.5", "fd00::5"))
    assert safe.server == "https://API.member.example/k8s/clusters/c-1"
    assert (safe.host, safe.port, safe.path) == ("api.member.example", 443, "/k8s/clusters/c-1")
    assert safe.addresses == ("10.0.0.5", "fd00::5")
    assert safe.tls_server_name == "api.member.example"
    assert (safe.client_cert_data, safe.client_key_data, safe.token) == (None, None, TOKEN)


def test_a_token_is_trimmed_and_certificates_alone_suffice() -> None:
    safe = load(change(set_in(user, token=f"  {TOKEN}\n")))
    assert safe.token == TOKEN
    safe = load(change(drop(user, "token")))
    assert safe.token is None
    assert safe.client_cert_data == CLIENT.cert


def test_the_only_context_is_used_without_current_context() -> None:
    safe = load(change(lambda d: d.pop("current-context")))
    assert safe.host == "127.0.0.1"


def test_unused_entries_are_ignored_not_honoured() -> None:
    def edit(doc: Doc) -> None:
        doc["users"].append({"name": "evil", "user": {"exec": EXEC}})
        doc["clusters"].append({"name": "meta", "cluster": {"server": "http://169.254.169.254"}})
        doc["contexts"].append({"name": "evil", "context": {"cluster": "meta", "user": "evil"}})

    safe = load(change(edit))
    assert safe.addresses == ("127.0.0.1",)

    def use_evil(doc: Doc) -> None:
        edit(doc)
        doc["current-context"] = "evil"

    with pytest.raises(KubeconfigError) as caught:
        load(change(use_evil))
    assert caught.value.reason == INSECURE


@pytest.mark.parametrize(
    "server",
    ["https://127.0.0.1:6443", "https://[::1]:6443", "https://localhost:6443"],
)
def test_loopback_is_allowed_by_default(server: str) -> None:
    safe = load(change(lambda d: None, server), resolver("127.0.0.1", "::1"))
    assert safe.port == 6443


def test_ignored_fields_are_accepted() -> None:
    def edit(doc: Doc) -> None:
        doc["preferences"] = {}
        cluster(doc)["insecure-skip-tls-verify"] = False
        cluster(doc)["extensions"] = [{"name": "x", "extension": {}}]
        doc["contexts"][0]["context"]["namespace"] = "default"

    assert load(change(edit)).host == "127.0.0.1"


def test_certificate_data_is_re_encoded_without_surrounding_text() -> None:
    noisy = b"# issued by the platform team\n" + CA.cert + b"\ntrailing words\n"
    safe = load(change(set_in(cluster, certificate_authority_data=b64(noisy))))
    assert safe.ca_data == CA.cert


# --- the client built from a vetted kubeconfig ---------------------------------------------


def test_the_client_is_pinned_to_the_vetted_address() -> None:
    text = change(
        drop(user, "client-certificate-data", "client-key-data"),
        "https://api.member.example:6443/prefix/",
    )
    safe = load(text, resolver("10.0.0.5", "10.0.0.6"))
    configuration = members.build_configuration(safe)
    assert configuration.host == "https://10.0.0.5:6443/prefix"
    assert configuration.tls_server_name == "api.member.example"
    assert configuration.verify_ssl is True
    assert configuration.ca_cert_data == CA.cert.decode()
    assert configuration.ssl_ca_cert is None
    assert configuration.retries is False
    assert configuration.auth_settings()["BearerToken"]["value"] == f"Bearer {TOKEN}"

    v6 = load(change(lambda d: None, "https://[fd00::5]:6443"))
    assert members.build_configuration(v6).host == "https://[fd00::5]:6443"
    assert members.build_configuration(v6).tls_server_name is None


def test_the_kubeconfig_server_name_wins_for_tls() -> None:
    safe = load(change(set_in(cluster, tls_server_name="kubernetes.default.svc")))
    assert members.build_configuration(safe).tls_server_name == "kubernetes.default.svc"


def test_the_client_ignores_proxies_and_global_state(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://proxy.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    before = Configuration.get_default_copy().host
    safe = load(dump(base()))
    with members.MemberClient(safe) as client:
        assert client.api.configuration.proxy is None
        pool = client.api.rest_client.pool_manager
        assert isinstance(pool, urllib3.PoolManager)
        assert not isinstance(pool, urllib3.ProxyManager)
    assert Configuration.get_default_copy().host == before


def test_client_key_material_lives_only_as_long_as_the_client() -> None:
    safe = load(dump(base()))
    client = members.MemberClient(safe)
    configuration = client.api.configuration
    with open(configuration.cert_file, "rb") as f:
        assert f.read() == CLIENT.cert
    with open(configuration.key_file, "rb") as f:
        assert f.read() == CLIENT.key
    client.close()
    assert not os.path.exists(configuration.cert_file)
    assert not os.path.exists(configuration.key_file)


def test_a_token_only_client_writes_no_key_material() -> None:
    safe = load(change(drop(user, "client-certificate-data", "client-key-data")))
    with members.MemberClient(safe) as client:
        assert client.api.configuration.cert_file is None
        assert client.api.configuration.key_file is None


# --- IPv6 forms that embed an IPv4 address -------------------------------------------------


def teredo(server: str, client: str) -> str:
    """A Teredo address (2001::/32): server in bits 32-63, client inverted in the last 32."""
    value = (0x20010000 << 96) | (int(ipaddress.IPv4Address(server)) << 64)
    value |= ~int(ipaddress.IPv4Address(client)) & 0xFFFFFFFF
    return str(ipaddress.IPv6Address(value))


# (form, IPv6 address, the IPv4 address it embeds)
EMBEDDED_DENIED: list[tuple[str, str, str]] = [
    ("IPv4-mapped metadata", "::ffff:169.254.169.254", "169.254.169.254"),
    ("NAT64 metadata", "64:ff9b::169.254.169.254", "169.254.169.254"),
    ("NAT64 local-use metadata", "64:ff9b:1::a9fe:a9fe", "169.254.169.254"),
    ("NAT64 local-use subnet metadata", "64:ff9b:1:ab::a9fe:a9fe", "169.254.169.254"),
    ("IPv4-compatible metadata", "::169.254.169.254", "169.254.169.254"),
    ("6to4 metadata", "2002:a9fe:a9fe::1", "169.254.169.254"),
    ("Teredo client metadata", teredo("65.54.227.120", "169.254.169.254"), "169.254.169.254"),
    ("IPv4-mapped 0.0.0.0/8", "::ffff:0.0.0.1", "0.0.0.1"),
    ("NAT64 0.0.0.0", "64:ff9b::", "0.0.0.0"),
    ("NAT64 local-use 0.0.0.0/8", "64:ff9b:1::7", "0.0.0.7"),
    ("IPv4-compatible 0.0.0.0/8", "::2", "0.0.0.2"),
    ("6to4 0.0.0.0", "2002::1", "0.0.0.0"),
    ("Teredo client 0.0.0.0", teredo("65.54.227.120", "0.0.0.0"), "0.0.0.0"),
]

EMBEDDED_ALLOWED: list[tuple[str, str]] = [
    ("IPv4-mapped private", "::ffff:10.0.0.1"),
    ("IPv4-mapped loopback", "::ffff:127.0.0.1"),
    ("NAT64 public", "64:ff9b::8.8.8.8"),
    ("NAT64 local-use private", "64:ff9b:1::10.1.2.3"),
    ("IPv4-compatible private", "::10.0.0.1"),
    ("loopback", "::1"),
    ("6to4 public", "2002:808:808::1"),
    ("Teredo public client", teredo("65.54.227.120", "192.0.2.45")),
    ("documentation range, not Teredo", "2001:db8::1"),
    ("global unicast", "2606:4700::1111"),
]


@pytest.mark.parametrize(
    ("address", "embedded"), [pytest.param(a, e, id=name) for name, a, e in EMBEDDED_DENIED]
)
def test_an_ipv6_literal_embedding_a_denied_ipv4_is_refused(address: str, embedded: str) -> None:
    text = change(lambda d: None, f"https://[{address}]:6443")
    with pytest.raises(KubeconfigError) as caught:
        load(text)
    assert caught.value.reason == INSECURE
    assert "clusters[0].cluster.server" in caught.value.message
    assert embedded in caught.value.message
    assert_no_secret(caught.value, text)


@pytest.mark.parametrize(
    ("address", "embedded"), [pytest.param(a, e, id=name) for name, a, e in EMBEDDED_DENIED]
)
def test_a_name_resolving_to_an_ipv6_form_of_a_denied_ipv4_is_refused(
    address: str, embedded: str
) -> None:
    text = change(lambda d: None, "https://api.member.example:6443")
    with pytest.raises(KubeconfigError) as caught:
        load(text, resolver("10.0.0.7", address))
    assert caught.value.reason == INSECURE
    assert "clusters[0].cluster.server" in caught.value.message
    assert "api.member.example" in caught.value.message
    assert embedded in caught.value.message


@pytest.mark.parametrize("address", [pytest.param(a, id=name) for name, a in EMBEDDED_ALLOWED])
def test_benign_ipv6_forms_are_accepted(address: str) -> None:
    safe = load(change(lambda d: None, f"https://[{address}]:6443"))
    assert safe.addresses == (str(ipaddress.IPv6Address(address)),)
    safe = load(change(lambda d: None, "https://api.member.example:6443"), resolver(address))
    assert safe.addresses == (str(ipaddress.IPv6Address(address)),)


def test_an_embedded_address_is_checked_against_extra_ranges_too() -> None:
    text = change(lambda d: None, "https://[64:ff9b::10.96.0.1]:6443")
    load(text)
    with pytest.raises(KubeconfigError) as caught:
        load(text, deny=kubeconfigs.deny_list(["10.96.0.0/12"]))
    assert caught.value.reason == INSECURE
    assert "10.96.0.1" in caught.value.message
    assert "10.96.0.0/12" in caught.value.message


@pytest.mark.parametrize("loader", [yaml.SafeLoader, kubeconfigs._YAML_LOADER])
def test_a_deeply_nested_kubeconfig_is_invalid(
    loader: type[yaml.SafeLoader], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kubeconfigs, "_YAML_LOADER", loader)
    with pytest.raises(KubeconfigError) as caught:
        load("clusters: " + "[" * 50_000 + "]" * 50_000)
    assert caught.value.reason == INVALID
