"""A real local Kubernetes control plane: etcd, kube-apiserver, kwok and (on request)
kube-controller-manager on loopback.

Used by ``fedcompute local`` and by the test suite. Binaries are built from pinned
sources (``hack/``) or taken from envtest-style prebuilt assets; clusters are process
trees owned by a small supervisor, with their state under the user's cache directory.
"""
