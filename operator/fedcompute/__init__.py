"""fedcompute: federated compute pools for Kubernetes.

The package is split so that pure logic (``api``, ``capacity``) never performs I/O,
and I/O adapters (``kube``, ``local``) hold no business rules.
"""

__version__ = "0.1.0"
