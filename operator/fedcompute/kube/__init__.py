"""I/O adapters to Kubernetes API servers; they hold no business rules.

:mod:`~fedcompute.kube.kubeconfigs` vets a member's kubeconfig (parsing only, plus the
server's name resolution) and :mod:`~fedcompute.kube.members` builds a client from the
vetted result and collects nodes and pods. Nothing here builds a client at import time.
"""
