"""Scale: convergence, memory and idle cost at 1,000, 2,500 and 5,000 providers.

For each size (20 providers per pool), on fresh local control planes with
kube-controller-manager: the convergence benchmark (benchmarks/convergence.py, median of
three runs against a bare client doing the same writes) and the idle benchmark
(benchmarks/idle.py, writes per minute per provider over an idle window). Prints each
run, then one table in the form docs/operator.md records. Usage::

    .venv/bin/python benchmarks/scale.py [--sizes 1000,2500,5000] [--idle-minutes 5]
"""

from __future__ import annotations

import os
import platform
import sys

from convergence import REGIONS, arguments, run_size
from idle import idle_run


def machine() -> str:
    """The machine, as the table should describe it."""
    cpus = os.cpu_count() or 0
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{cpus} cores, {memory:.0f} GiB, {platform.machine()}, Python {platform.python_version()}"
    )


def main() -> int:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,2500,5000")
    parser.add_argument("--idle-minutes", type=float, default=5.0)
    parser.add_argument("--settle", type=float, default=60.0)
    args = parser.parse_args()
    rows = []
    for providers in (int(s) for s in args.sizes.split(",")):
        pools = providers // 20
        converged = run_size(args, providers, pools)
        idle = idle_run(providers, pools, args.idle_minutes, args.settle)
        if converged is None or idle is None:
            return 1
        best = converged.median
        rows.append(
            f"| {providers:,} | {pools} | {best.op_time:.1f} s | {best.base_time:.1f} s | "
            f"{best.ratio:.2f}x | {max(r.rss for r in converged.runs):.0f} MB | "
            f"{idle.per_minute:.2f} | {sum(idle.defects.values()):.0f} | "
            f"{len(converged.marked) + len(idle.marked)} |"
        )
    print(f"\nMachine: {machine()}; {REGIONS} regions, 20 providers per pool.")
    print(
        "| providers | pools | convergence (median of 3) | baseline | ratio | peak RSS "
        "| idle writes per minute per provider | non-Lease idle writes | nodes marked NotReady |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
