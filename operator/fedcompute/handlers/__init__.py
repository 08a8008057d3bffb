"""Kopf wiring: thin handlers that feed the reconcile engine, and ``fedcompute run``."""
