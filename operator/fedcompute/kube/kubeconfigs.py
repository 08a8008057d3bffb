"""Vet a member cluster's kubeconfig before any client is built or connection made.

A kubeconfig is code as much as data: ``exec`` and ``auth-provider`` run programs, file
paths read the operator's own disk (its service-account token, for one), ``proxy-url``
and the server address aim the operator's network position at anything, including cloud
metadata endpoints. A member kubeconfig comes from a Secret that a less trusted user may
write, so only a small, inline subset is accepted and everything else is refused by name.

Rules:

* Only the entries the selected context uses (``current-context``, or the only context)
  are vetted and used; other entries are ignored, never honoured.
* Accepted: ``server`` (``https://`` only), ``certificate-authority-data`` (required: the
  operator trusts only the CA the kubeconfig pins), ``tls-server-name``,
  ``insecure-skip-tls-verify: false``, ``client-certificate-data`` with
  ``client-key-data``, and ``token``.
* Reasons: ``InsecureKubeconfig`` for a kubeconfig kubectl would use but that asks for
  something the operator refuses to do; ``InvalidKubeconfig`` for one that is not a
  usable kubeconfig at all; ``Unreachable`` when the server's host name does not resolve
  (transient, so reported apart from the two above).
* An IPv6 address that embeds an IPv4 one (IPv4-mapped, NAT64, IPv4-compatible, 6to4,
  Teredo) is refused when either address is in a denied range.
* Messages name the offending field (``users[0].user.exec``) and never echo a secret, a
  data value or the document itself.

Nothing here spawns a process, opens a file or connects; the one outside call is the
host-name resolution, done by the injected ``resolve``.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

INVALID = "InvalidKubeconfig"
INSECURE = "InsecureKubeconfig"
UNREACHABLE = "Unreachable"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Iterable[tuple[Any, ...]]]
"""``socket.getaddrinfo``-shaped: ``(host, port) -> [(family, type, proto, name, sockaddr)]``."""

DEFAULT_DENY: tuple[IPNetwork, ...] = (
    # Link-local: cloud metadata (AWS, GCP, Azure, OpenStack, Oracle at 169.254.169.254,
    # ECS task metadata at 169.254.170.2, Tencent at 169.254.0.23) and on-link neighbours.
    ipaddress.ip_network("169.254.0.0/16"),
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS instance metadata over IPv6
    ipaddress.ip_network("100.100.100.200/32"),  # Alibaba Cloud metadata
    ipaddress.ip_network("168.63.129.16/32"),  # Azure WireServer
    # Never a real server; connecting to them reaches the local host's listeners.
    ipaddress.ip_network("0.0.0.0/8"),
    ipaddress.ip_network("::/128"),
)
"""Ranges no member server may resolve into. Loopback is allowed (local clusters live
there); add the host cluster's own pod and service ranges with :func:`deny_list`."""

MAX_KUBECONFIG_BYTES = 1 << 20  # a Secret holds at most 1 MiB

# libyaml's safe loader when present: the same constructor as yaml.safe_load, about three
# times faster, which matters because parsing counts against the collection's deadline.
_YAML_LOADER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(
    yaml, "CSafeLoader", yaml.SafeLoader
)

_TOP_LEVEL = frozenset(
    {"apiVersion", "kind", "clusters", "contexts", "users", "current-context", "preferences"}
)
_CLUSTER_FIELDS = frozenset(
    {"server", "certificate-authority-data", "tls-server-name", "insecure-skip-tls-verify"}
)
_CLUSTER_REFUSED = {
    "certificate-authority": "it reads a file path; use certificate-authority-data",
    "proxy-url": "it would route the operator's traffic through a proxy",
}
_BASIC_AUTH = "basic authentication sends a reusable password; use a token or a client certificate"
_USER_FIELDS = frozenset({"client-certificate-data", "client-key-data", "token"})
_USER_REFUSED = {
    "exec": "it would run a program in the operator",
    "auth-provider": "it would run an authentication plugin in the operator",
    "tokenFile": "it reads a file path; use token",
    "client-certificate": "it reads a file path; use client-certificate-data",
    "client-key": "it reads a file path; use client-key-data",
    "username": _BASIC_AUTH,
    "password": _BASIC_AUTH,
}
_IGNORED = frozenset({"extensions", "disable-compression", "namespace"})
_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?$")
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,63}$")
_TOKEN = re.compile(r"^[\x21-\x7e]+$")  # visible ASCII: safe inside an HTTP header


class KubeconfigError(ValueError):
    """A kubeconfig was refused; ``reason`` is a CamelCase condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class SafeKubeconfig:
    """What a vetted kubeconfig lets the operator do: one https server, inline material.

    Secrets are kept out of ``repr`` so that logging the object leaks nothing.
    """

    server: str
    """The server URL as written, without a trailing slash."""
    host: str
    """Host name or IP literal of the server (no brackets)."""
    port: int
    addresses: tuple[str, ...]
    """The vetted addresses ``host`` resolved to; connections go to the first one so a
    second resolution (DNS rebinding) cannot redirect them."""
    ca_data: bytes = field(repr=False)
    """PEM CA bundle (re-encoded, nothing but certificates): the only roots trusted."""
    client_cert_data: bytes | None = field(default=None, repr=False)
    """PEM client certificate chain, re-encoded."""
    client_key_data: bytes | None = field(default=None, repr=False)
    """Unencrypted PKCS#8 PEM key matching ``client_cert_data``."""
    token: str | None = field(default=None, repr=False)
    tls_server_name: str | None = None
    """Name to send in SNI and to verify the serving certificate against, if not ``host``."""
    path: str = ""
    """Path prefix of the server URL (e.g. behind an authenticating proxy), or empty."""


def deny_list(extra: Iterable[str] = ()) -> tuple[IPNetwork, ...]:
    """:data:`DEFAULT_DENY` plus ``extra`` CIDRs (``--deny-cidr``); ``ValueError`` if bad."""
    return DEFAULT_DENY + tuple(ipaddress.ip_network(cidr, strict=False) for cidr in extra)


def _invalid(message: str) -> KubeconfigError:
    return KubeconfigError(INVALID, message)


def _insecure(message: str) -> KubeconfigError:
    return KubeconfigError(INSECURE, message)


def _name(value: object) -> str:
    """A user-supplied name, quoted and shortened for a message."""
    text = value if isinstance(value, str) else str(type(value).__name__)
    return repr(text if len(text) <= 63 else text[:60] + "...")


def _mapping(value: object, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _invalid(f"{path} must be a mapping")
    return value


def _list(value: object, path: str) -> list[Mapping[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise _invalid(f"{path} must be a list of mappings")
    return value


def _find(entries: list[Mapping[str, Any]], kind: str, name: object) -> int:
    """Index of the one entry called ``name`` in ``kind`` (clusters, users, contexts)."""
    found = [i for i, entry in enumerate(entries) if entry.get("name") == name]
    if not found:
        raise _invalid(f"{kind} has no entry named {_name(name)}")
    if len(found) > 1:
        raise _invalid(f"{kind} has {len(found)} entries named {_name(name)}")
    return found[0]


def _check_fields(
    body: Mapping[str, Any], path: str, allowed: frozenset[str], refused: Mapping[str, str]
) -> None:
    for key in body:
        if key in refused:
            raise _insecure(f"{path}.{key} is refused: {refused[key]}")
    for key in body:
        if key not in allowed and key not in _IGNORED:
            shown = key if isinstance(key, str) and _PLAIN_KEY.match(key) else _name(key)
            raise _invalid(f"{path}.{shown} is not supported")


def _decode(value: object, path: str) -> bytes:
    if not isinstance(value, str) or not value.strip():
        raise _invalid(f"{path} must be a non-empty base64 string")
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(f"{path} is not valid base64") from None


def _pem_certificates(data: bytes, path: str) -> bytes:
    """The certificates in ``data``, re-encoded: whatever surrounded them is dropped."""
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise _invalid(f"{path} does not hold PEM certificates") from None
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def _key_pair(cert_data: bytes, key_data: bytes, path: str) -> tuple[bytes, bytes]:
    """The client certificate chain and its key, checked to match and re-encoded."""
    chain = _pem_certificates(cert_data, f"{path}.client-certificate-data")
    certificate = x509.load_pem_x509_certificates(chain)[0]
    try:
        key = serialization.load_pem_private_key(key_data, password=None)
    except TypeError:
        raise _invalid(f"{path}.client-key-data is encrypted") from None
    except (ValueError, UnsupportedAlgorithm):
        raise _invalid(f"{path}.client-key-data does not hold a PEM private key") from None
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, spki) != certificate.public_key().public_bytes(der, spki):
        raise _invalid(f"{path}.client-key-data does not match client-certificate-data")
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return chain, pem


@dataclass(frozen=True)
class _Server:
    url: str
    host: str
    port: int
    path: str
    literal: IPAddress | None


def _parse_server(value: object, path: str) -> _Server:
    if not isinstance(value, str) or not value.strip():
        raise _invalid(f"{path} is missing")
    url = value.strip()
    try:
        parts = urlsplit(url)
        port = parts.port or 443
    except ValueError:
        raise _invalid(f"{path} is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme == "http":
        raise _insecure(f"{path} uses http://; only https:// servers are accepted")
    if scheme != "https":
        raise _invalid(f"{path} must be an https:// URL")
    if "@" in parts.netloc:
        raise _insecure(f"{path} carries credentials in the URL")
    if parts.query or parts.fragment:
        raise _invalid(f"{path} must not have a query or fragment")
    host = (parts.hostname or "").split("%", 1)[0]
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
        if not _HOSTNAME.match(host):
            raise _invalid(f"{path} has no valid host name") from None
    return _Server(url.rstrip("/"), host, port, parts.path.rstrip("/"), literal)


_NAT64 = (
    ipaddress.ip_network("64:ff9b::/96"),  # well-known prefix (RFC 6052)
    ipaddress.ip_network("64:ff9b:1::/48"),  # local-use prefix (RFC 8215)
)
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries, where a translator or tunnel delivers it.

    A denied IPv4 range is reachable through IPv4-mapped (``::ffff:a.b.c.d``), NAT64
    (``64:ff9b::a.b.c.d``, and the local-use ``64:ff9b:1::/48``, last 32 bits),
    IPv4-compatible (``::a.b.c.d``), 6to4 (``2002::/16``) and Teredo (``2001::/32``, the
    client address) forms, so each is unwrapped and checked as well.
    """
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if any(address in prefix for prefix in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _IPV4_COMPATIBLE and int(address) > 1:  # not :: or ::1
        return ipaddress.IPv4Address(int(address))
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def _denied(address: IPAddress, deny: Sequence[IPNetwork]) -> tuple[IPAddress, IPNetwork] | None:
    """The first of ``address`` and the IPv4 address it embeds that is denied, and where."""
    candidates: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            candidates.append(embedded)
    for candidate in candidates:
        for network in deny:
            if candidate in network:
                return candidate, network
    return None


def _resolve(server: _Server, path: str, resolve: Resolver) -> list[IPAddress]:
    if server.literal is not None:
        return [server.literal]
    try:
        entries = list(resolve(server.host, server.port))
    except (OSError, UnicodeError):
        raise KubeconfigError(
            UNREACHABLE, f"{path} host {_name(server.host)} does not resolve"
        ) from None
    addresses: list[IPAddress] = []
    for entry in entries:
        try:
            address = ipaddress.ip_address(str(entry[4][0]).split("%", 1)[0])
        except (IndexError, TypeError, ValueError):
            continue
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise KubeconfigError(UNREACHABLE, f"{path} host {_name(server.host)} has no address")
    return addresses


def _check_addresses(
    server: _Server, addresses: Sequence[IPAddress], path: str, deny: Sequence[IPNetwork]
) -> None:
    for address in addresses:
        found = _denied(address, deny)
        if found is None:
            continue
        candidate, network = found
        via = "" if candidate == address else f", which embeds {candidate},"
        if server.literal is not None:
            raise _insecure(f"{path} address {address}{via} is in the denied range {network}")
        raise _insecure(
            f"{path} host {_name(server.host)} resolves to {address}{via} "
            f"in the denied range {network}"
        )


def _load_document(text: str) -> Mapping[str, Any]:
    if not isinstance(text, str):
        raise _invalid("the kubeconfig must be text")
    if len(text.encode("utf-8", "replace")) > MAX_KUBECONFIG_BYTES:
        raise _invalid("the kubeconfig is larger than 1 MiB")
    try:
        document = yaml.load(text, Loader=_YAML_LOADER)  # noqa: S506 - a safe loader
    except RecursionError:
        raise _invalid("the kubeconfig is nested too deeply") from None
    except yaml.YAMLError as exc:
        # The parser's own message quotes the document; say only where it failed.
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise _invalid(f"the kubeconfig is not valid YAML{where}") from None
    if not isinstance(document, Mapping):
        raise _invalid("the kubeconfig must be a YAML mapping")
    if document.get("apiVersion", "v1") != "v1" or document.get("kind", "Config") != "Config":
        raise _invalid("the kubeconfig must be apiVersion v1, kind Config")
    for key in document:
        if key not in _TOP_LEVEL and key not in _IGNORED:
            raise _invalid(f"{_name(key)} is not a kubeconfig field")
    return document


def _selected(
    document: Mapping[str, Any],
) -> tuple[Mapping[str, Any], str, Mapping[str, Any], str]:
    """The cluster and user entries of the selected context, with their field paths."""
    clusters = _list(document.get("clusters"), "clusters")
    users = _list(document.get("users"), "users")
    contexts = _list(document.get("contexts"), "contexts")
    current = document.get("current-context")
    if current:
        c_index = _find(contexts, "contexts", current)
    elif len(contexts) == 1:
        c_index = 0
    else:
        raise _invalid(f"no current-context, and {len(contexts)} contexts to choose from")
    c_path = f"contexts[{c_index}].context"
    context = _mapping(contexts[c_index].get("context"), c_path)
    _check_fields(context, c_path, frozenset({"cluster", "user"}), {})
    if not context.get("cluster"):
        raise _invalid(f"{c_path}.cluster is missing")
    if not context.get("user"):
        raise _invalid(f"{c_path}.user is missing")
    k_index = _find(clusters, "clusters", context["cluster"])
    k_path = f"clusters[{k_index}].cluster"
    cluster = _mapping(clusters[k_index].get("cluster"), k_path)
    _check_fields(cluster, k_path, _CLUSTER_FIELDS, _CLUSTER_REFUSED)
    u_index = _find(users, "users", context["user"])
    u_path = f"users[{u_index}].user"
    user = _mapping(users[u_index].get("user"), u_path)
    _check_fields(user, u_path, _USER_FIELDS, _USER_REFUSED)
    return cluster, k_path, user, u_path


def _trust(cluster: Mapping[str, Any], k_path: str) -> tuple[bytes, str | None]:
    """The pinned CA and the TLS server name: verification is never switched off."""
    skip = cluster.get("insecure-skip-tls-verify", False)
    if skip is True:
        raise _insecure(f"{k_path}.insecure-skip-tls-verify is true; TLS must be verified")
    if skip is not False:
        raise _invalid(f"{k_path}.insecure-skip-tls-verify must be a boolean")
    if "certificate-authority-data" not in cluster:
        raise _insecure(
            f"{k_path}.certificate-authority-data is missing; the operator trusts only a "
            "CA pinned in the kubeconfig"
        )
    ca_path = f"{k_path}.certificate-authority-data"
    ca_data = _pem_certificates(_decode(cluster["certificate-authority-data"], ca_path), ca_path)
    tls_server_name = cluster.get("tls-server-name")
    if tls_server_name is not None and (
        not isinstance(tls_server_name, str) or not _HOSTNAME.match(tls_server_name.lower())
    ):
        raise _invalid(f"{k_path}.tls-server-name is not a host name")
    return ca_data, tls_server_name.lower().rstrip(".") if tls_server_name else None


def _credentials(
    user: Mapping[str, Any], u_path: str
) -> tuple[bytes | None, bytes | None, str | None]:
    """Client certificate chain and key, and/or bearer token: inline data only."""
    cert_data = key_data = None
    has_cert = "client-certificate-data" in user
    if has_cert != ("client-key-data" in user):
        raise _invalid(f"{u_path} needs both client-certificate-data and client-key-data")
    if has_cert:
        cert_data, key_data = _key_pair(
            _decode(user["client-certificate-data"], f"{u_path}.client-certificate-data"),
            _decode(user["client-key-data"], f"{u_path}.client-key-data"),
            u_path,
        )
    token = user.get("token")
    if token is not None and (not isinstance(token, str) or not _TOKEN.match(token.strip())):
        raise _invalid(f"{u_path}.token is not a valid bearer token")
    if cert_data is None and not token:
        raise _invalid(
            f"{u_path} has no credentials: client-certificate-data with client-key-data, or token"
        )
    return cert_data, key_data, token.strip() if token else None


def load_safe_kubeconfig(
    text: str,
    *,
    deny_cidrs: Sequence[IPNetwork] = DEFAULT_DENY,
    resolve: Resolver = socket.getaddrinfo,
) -> SafeKubeconfig:
    """Vet ``text`` and return what it safely allows, or raise :class:`KubeconfigError`.

    ``deny_cidrs`` replaces the denied ranges (build it with :func:`deny_list` to keep the
    defaults). Every address the server's host resolves to must be outside them.
    """
    cluster, k_path, user, u_path = _selected(_load_document(text))
    ca_data, tls_server_name = _trust(cluster, k_path)
    server = _parse_server(cluster.get("server"), f"{k_path}.server")
    cert_data, key_data, token = _credentials(user, u_path)
    addresses = _resolve(server, f"{k_path}.server", resolve)
    _check_addresses(server, addresses, f"{k_path}.server", deny_cidrs)
    return SafeKubeconfig(
        server=server.url,
        host=server.host,
        port=server.port,
        addresses=tuple(str(a) for a in addresses),
        ca_data=ca_data,
        client_cert_data=cert_data,
        client_key_data=key_data,
        token=token,
        tls_server_name=tls_server_name,
        path=server.path,
    )
