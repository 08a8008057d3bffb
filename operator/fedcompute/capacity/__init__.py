"""Capacity arithmetic: pure functions from plain data to figures.

Nothing in this package performs I/O, reads the clock or talks to an API server; inputs
are plain mappings (the wire JSON of Kubernetes objects, or declared spec values) so that
every rule is unit-tested in milliseconds and behaves the same whatever client fetched
the data.
"""
