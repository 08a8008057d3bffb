"""Reads and writes on the host cluster, as raw JSON.

The operator's own API traffic (lists at start-up, status patches, virtual Nodes, Leases,
Events, kubeconfig Secrets) goes through this one adapter, built on the ``kubernetes``
client's transport but skipping its model (de)serialisation, which would dominate the
CPU cost of a large platform. Every method is synchronous; the engine calls them from
a bounded thread pool.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import fedcompute
from fedcompute.api import API_VERSION

GROUP_PATH: Final = f"/apis/{API_VERSION}"
USER_AGENT: Final = f"fedcompute/{fedcompute.__version__}"
"""The operator's user agent; the API server names its field manager after it."""
MERGE: Final = "application/merge-patch+json"

Json = dict[str, Any]


class HostError(RuntimeError):
    """A host API call failed; ``status`` is the HTTP status (0 when none)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class RequestCounter:
    """Counts the operator's API requests by verb (for benchmarks and metrics)."""

    counts: dict[str, int]
    lock: threading.Lock

    def add(self, verb: str) -> None:
        """Count one request."""
        with self.lock:
            self.counts[verb] = self.counts.get(verb, 0) + 1


class Host:
    """The host cluster, through one shared ``kubernetes.client.ApiClient``."""

    def __init__(self, api_client: Any, *, timeout: float = 30.0) -> None:
        self._api = api_client
        self._timeout = timeout
        self.requests = RequestCounter({}, threading.Lock())

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, *, pool_size: int = 32) -> Host:
        """Load credentials from a kubeconfig file, or in-cluster when running in a pod."""
        from kubernetes import client, config

        configuration = client.Configuration()
        try:
            if path:
                config.load_kube_config(config_file=path, client_configuration=configuration)
            else:
                config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)
        configuration.connection_pool_maxsize = pool_size
        api = client.ApiClient(configuration)
        # The API server names the field manager of each write after the user agent: this
        # makes managedFields say "fedcompute" rather than the client library's default.
        api.user_agent = USER_AGENT
        return cls(api)

    def close(self) -> None:
        """Release the connection pool."""
        self._api.close()

    # --- transport ----------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
        decode: bool = True,
    ) -> Json:
        """One API call; returns the decoded JSON body ({} with ``decode=False``, for
        writes whose answer nobody reads: decoding it would only cost CPU)."""
        self.requests.add(method)
        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            verb, url, headers, payload, _ = self._api.param_serialize(
                method=method,
                resource_path=path,
                query_params=query or [],
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self._api.call_api(
                verb, url, header_params=headers, body=payload, _request_timeout=self._timeout
            )
            data = response.read()
        except Exception as exc:  # connection errors: urllib3, ssl, socket
            raise HostError(0, f"{method} {path}: {type(exc).__name__}") from None
        if not 200 <= response.status < 300:
            raise HostError(response.status, _short(response.status, response.reason, data))
        decoded: Json = json.loads(data) if data and decode else {}
        return decoded

    def served(self, path: str) -> bool:
        """Whether the API server serves a group version (discovery: 200, or 404)."""
        try:
            self.request("GET", path)
        except HostError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def list_all(self, path: str, *, label_selector: str | None = None) -> Iterator[Json]:
        """Every item of a collection, paginated."""
        token = ""
        while True:
            query = [("limit", "500")]
            if label_selector:
                query.append(("labelSelector", label_selector))
            if token:
                query.append(("continue", token))
            page = self.request("GET", path, query=query)
            yield from page.get("items") or []
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                return

    # --- custom resources ---------------------------------------------------------------

    def patch_status(self, plural: str, name: str, status: Json) -> Json:
        """Merge-patch ``status`` of a cluster-scoped fedcompute object."""
        return self.request(
            "PATCH",
            f"{GROUP_PATH}/{plural}/{name}/status",
            body={"status": status},
            content_type=MERGE,
        )

    def set_finalizers(self, plural: str, name: str, finalizers: list[str], rv: str) -> Json:
        """Replace ``metadata.finalizers``, guarded by ``resourceVersion``."""
        body = {"metadata": {"finalizers": finalizers, "resourceVersion": rv}}
        return self.request("PATCH", f"{GROUP_PATH}/{plural}/{name}", body=body, content_type=MERGE)

    # --- nodes and leases ---------------------------------------------------------------

    def create_node(self, body: Json) -> Json:
        """Create a Node (its status is kept on create)."""
        return self.request("POST", "/api/v1/nodes", body=body)

    def patch_node(self, name: str, patch: Json) -> Json:
        """Merge-patch a Node's metadata and spec."""
        return self.request("PATCH", f"/api/v1/nodes/{name}", body=patch, content_type=MERGE)

    def patch_node_status(self, name: str, patch: Json) -> Json:
        """Merge-patch a Node's status."""
        return self.request("PATCH", f"/api/v1/nodes/{name}/status", body=patch, content_type=MERGE)

    def delete(self, path: str, *, uid: str | None = None) -> None:
        """Delete an object (only the one with ``uid``, when given); absent counts as done."""
        body = {"preconditions": {"uid": uid}} if uid else None
        try:
            self.request("DELETE", path, body=body)
        except HostError as exc:
            if exc.status != 404:
                raise

    def create_lease(self, body: Json) -> Json:
        """Create a Lease in its namespace."""
        return self.request("POST", leases_path(body["metadata"]["namespace"]), body=body)

    def renew_lease(
        self, namespace: str, name: str, renew_time: str, *, decode: bool = True
    ) -> Json:
        """Move a Lease's renewTime forward (``decode=False``: the answer is not needed)."""
        return self.request(
            "PATCH",
            leases_path(namespace, name),
            body={"spec": {"renewTime": renew_time}},
            content_type=MERGE,
            decode=decode,
        )

    def delete_lease(self, namespace: str, name: str) -> None:
        """Delete a Lease; absent counts as done."""
        self.delete(leases_path(namespace, name))

    def list_labelled(self, *, label: str, lease_namespace: str) -> tuple[list[Json], list[Json]]:
        """Every Node, and every Lease in ``lease_namespace``, carrying ``label``."""
        node_list = list(self.list_all("/api/v1/nodes", label_selector=label))
        lease_list = list(self.list_all(leases_path(lease_namespace), label_selector=label))
        return node_list, lease_list

    # --- secrets and events -------------------------------------------------------------

    def read_secret(self, namespace: str, name: str) -> Json:
        """One Secret (the caller must never log its data)."""
        return self.request("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")

    def create_event(self, namespace: str, body: Json) -> None:
        """Record a core/v1 Event."""
        self.request("POST", f"/api/v1/namespaces/{namespace}/events", body=body)


def leases_path(namespace: str, name: str = "") -> str:
    """The API path of the Leases of a namespace, or of one of them."""
    path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
    return f"{path}/{name}" if name else path


def _short(status: int, reason: str | None, data: bytes | None) -> str:
    """Status code and the API's own message, never a whole body."""
    try:
        message = str(json.loads(data or b"{}").get("message", ""))
    except (ValueError, AttributeError):
        message = ""
    return f"HTTP {status} {reason or ''}: {message[:300]}".strip()
