"""The capacity report: what the platform's pools and providers offer, read from status.

:mod:`fedcompute.report.rendering` is pure: it turns the wire JSON of ComputeProviders and
RegionPools into a ``CapacityReport`` document and renders it as a table, JSON or YAML,
with no I/O, no clock and no API client. :mod:`fedcompute.report.commands` is the
``fedcompute capacity`` command, the only part that talks to an API server, and only
ever lists the two kinds: it never writes.
"""
