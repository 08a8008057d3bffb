"""Process-wide settings of ``fedcompute run``."""

from __future__ import annotations

import gc
import os
from typing import Final

GC_THRESHOLD: Final = (50_000, 20, 20)
"""Generation thresholds of the cyclic garbage collector (CPython's default is 700, 10, 10).

A member collection parses hundreds of MiB of JSON a page at a time: millions of short-lived
dicts that reference counting frees, but which at the default threshold start a young
collection every 700 allocations and promote each page's objects far enough to trigger
full collections over everything the process holds. Measured on
``benchmarks/collection.py`` (5,000 nodes, 50,000 pods), the collector took 1.9 of the
operator's 6.5 CPU seconds at the default and 0.4 of 5.2 with these (collection 1.60x the
bare client's time, then 1.25x), peak RSS 86 MB either way.
"""


DEFAULT_GC_ENV: Final = "FEDCOMPUTE_GC_DEFAULT"
"""Set (to anything) to keep CPython's defaults: how benchmarks measure the difference."""


def tune_gc() -> None:
    """Freeze what start-up allocated (imports, clients: never garbage) out of the
    collector's sight, and collect young objects less often (see :data:`GC_THRESHOLD`)."""
    if os.environ.get(DEFAULT_GC_ENV):
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
