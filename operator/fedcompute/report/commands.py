"""``fedcompute capacity``: the platform's pools and providers at a glance.

Works against any kubeconfig. It only lists ComputeProviders and RegionPools (``get``
and ``list`` are all the RBAC it needs) and never writes, not even to the kubeconfig
file. Exit codes: 0 on success (and on Ctrl-C in ``--watch``), 1 when the API server
cannot be reached or refuses, 2 on usage errors.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TextIO

from fedcompute.api import accelerator, pool, provider
from fedcompute.api.accelerator import AcceleratorModel
from fedcompute.capacity.catalog import Catalog, from_object
from fedcompute.kube.host import GROUP_PATH, Host, HostError
from fedcompute.report import fit, rendering

PROG: Final = "fedcompute capacity"
FORMATS: Final = ("table", "json", "yaml")
DEFAULT_INTERVAL: Final = 5.0
REQUEST_TIMEOUT: Final = 20.0
MIN_WIDTH: Final = 40
CLEAR: Final = "\x1b[H\x1b[2J"
PROVIDERS_PATH: Final = f"{GROUP_PATH}/{provider.PLURAL}"
MODELS_PATH: Final = f"{GROUP_PATH}/{accelerator.PLURAL}"
POOLS_PATH: Final = f"{GROUP_PATH}/{pool.PLURAL}"

Objects = tuple[list[dict[str, Any]], list[dict[str, Any]]]


class CapacityError(RuntimeError):
    """Reading the cluster failed; the message is one line for the user."""


@dataclass(frozen=True)
class Connection:
    """The host adapter, used for reads only, and the server it talks to (for messages)."""

    host: Host
    server: str


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _shape(text: str) -> fit.Shape:
    try:
        return fit.parse_shape(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(subparsers: Any) -> None:
    """Add the ``capacity`` command."""
    parser = subparsers.add_parser(
        "capacity",
        help="show pools, providers and their capacity, read from status",
        description="Show every RegionPool with the ComputeProviders it claims, their "
        "regions, accelerators and states (Ready, Stale, NotReady, Pending), the providers "
        "no pool claims, and platform totals. Reads status only; never writes.",
    )
    parser.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="kubeconfig to use (default: $KUBECONFIG, else ~/.kube/config, else in-cluster)",
    )
    parser.add_argument("--context", help="kubeconfig context to use (default: current)")
    parser.add_argument(
        "-o",
        "--output",
        choices=FORMATS,
        default="table",
        help="table (default), or json / yaml: a CapacityReport carrying each object's status",
    )
    parser.add_argument(
        "--pool",
        action="append",
        default=[],
        metavar="NAME",
        help="only this RegionPool (repeatable); hides unclaimed providers",
    )
    parser.add_argument(
        "--region",
        action="append",
        default=[],
        metavar="NAME",
        help="only providers in this region, and the pools that touch it (repeatable)",
    )
    parser.add_argument(
        "--fit",
        type=_shape,
        metavar="NxMODEL",
        help="how many jobs of N devices of MODEL on one node fit now, per pool and provider "
        "(e.g. 8xNVIDIA-H100-80GB-HBM3; N is 1, 2, 4, 8 or 16; MODEL a name or alias); "
        '-o json prints {"shape", "total", "pools": [{"name", "slots", "providers"}]}',
    )
    parser.add_argument(
        "-w", "--watch", action="store_true", help="refresh until interrupted (Ctrl-C)"
    )
    parser.add_argument(
        "--interval",
        type=_positive,
        default=DEFAULT_INTERVAL,
        metavar="SECONDS",
        help=f"seconds between refreshes with --watch (default {DEFAULT_INTERVAL:g})",
    )
    parser.add_argument(
        "--no-color",
        action="store_true",
        help="no colours (also off when NO_COLOR is set or the output is not a terminal)",
    )
    parser.set_defaults(func=run)


# --- reading the cluster -----------------------------------------------------------------


def connect(kubeconfig: str | None, context: str | None) -> Connection:
    """A read-only use of the host adapter, with credentials found the way kubectl finds them.

    ``--kubeconfig``, else ``$KUBECONFIG`` (a list of files, merged), else
    ``~/.kube/config``, else the pod's service account. The kubeconfig is never written
    back (``persist_config=False``), even when a credential plugin refreshes a token.
    """
    from kubernetes import client, config

    configuration = client.Configuration()
    path = kubeconfig or os.environ.get("KUBECONFIG") or None
    try:
        if kubeconfig and not Path(kubeconfig).expanduser().is_file():
            raise CapacityError(f"kubeconfig {kubeconfig} not found")
        if path and not any(Path(p).expanduser().is_file() for p in path.split(os.pathsep) if p):
            raise CapacityError(f"no kubeconfig file found in KUBECONFIG={path}")
        default = Path(config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION).expanduser()
        if path is None and not default.is_file():
            if context:
                raise CapacityError("--context needs a kubeconfig, and none was found")
            if not os.environ.get("KUBERNETES_SERVICE_HOST"):
                raise CapacityError(
                    f"no kubeconfig: pass --kubeconfig, set KUBECONFIG or create {default}"
                )
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(
                config_file=path or str(default),
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
    except CapacityError:
        raise
    except Exception as exc:  # ConfigException, YAML errors, credential plugins
        raise CapacityError(f"cannot load credentials: {_one_line(exc)}") from None
    host = Host(client.ApiClient(configuration), timeout=REQUEST_TIMEOUT)
    return Connection(host, str(configuration.host))


def fetch_catalog(connection: Connection) -> Catalog:
    """The built-in catalog with the cluster's AcceleratorModels over it; the built-in one
    alone when they cannot be read (no CRD, or no RBAC to list them)."""
    try:
        bodies = list(connection.host.list_all(MODELS_PATH))
    except (HostError, ValueError):
        return Catalog()
    specs = []
    for body in sorted(bodies, key=lambda b: str(b.get("metadata", {}).get("name", ""))):
        try:
            specs.append(from_object(AcceleratorModel.model_validate(body)))
        except ValueError:
            continue
    return Catalog(specs)


def fetch(connection: Connection) -> Objects:
    """Every ComputeProvider and RegionPool (two paginated lists, nothing else)."""
    try:
        providers = list(connection.host.list_all(PROVIDERS_PATH))
        pools = list(connection.host.list_all(POOLS_PATH))
    except HostError as exc:
        raise CapacityError(_explain(exc, connection.server)) from None
    except ValueError as exc:  # a body that is not JSON: not an API server, or a proxy
        raise CapacityError(f"{connection.server}: unreadable response: {_one_line(exc)}") from None
    return providers, pools


def _explain(exc: HostError, server: str) -> str:
    if exc.status == 0:
        return f"cannot reach {server}: {exc}"
    if exc.status == 401:
        return f"{server} rejected the credentials (HTTP 401): check the kubeconfig's user"
    if exc.status == 403:
        return (
            f"{server} refused the request (HTTP 403): reading capacity needs get and list on "
            f"{provider.PLURAL} and {pool.PLURAL} in fedcompute.io; {exc}"
        )
    if exc.status == 404:
        return (
            f"{server} does not serve fedcompute.io/v1alpha1 {provider.PLURAL} and "
            f"{pool.PLURAL}: are the CRDs installed? (fedcompute crds | kubectl apply -f -)"
        )
    return f"{server}: {exc}"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


# --- output ------------------------------------------------------------------------------


def use_color(args: argparse.Namespace, stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Colour only on a terminal, without --no-color and without NO_COLOR."""
    if args.no_color or environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def render(report: Mapping[str, Any], *, output: str, width: int, color: bool) -> str:
    """The report in the requested format."""
    if output == "json":
        return rendering.render_json(report)
    if output == "yaml":
        return rendering.render_yaml(report)
    return rendering.render_table(report, width=width, color=color)


def render_fit(result: Mapping[str, Any], output: str) -> str:
    """The ``--fit`` answer in the requested format."""
    if output == "json":
        return rendering.render_json(result)
    if output == "yaml":
        return rendering.render_yaml(result)
    return fit.render_fit_table(result)


def _width() -> int:
    return max(MIN_WIDTH, shutil.get_terminal_size((80, 24)).columns)


def run(args: argparse.Namespace) -> int:
    """Print the report once, or keep refreshing it with ``--watch``."""
    out = sys.stdout
    try:
        connection = connect(args.kubeconfig, args.context)
    except CapacityError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    try:
        catalog = fetch_catalog(connection) if args.fit is not None else Catalog()
        return loop(
            args,
            fetch=lambda: fetch(connection),
            catalog=catalog,
            out=out,
            err=sys.stderr,
            tty=bool(out.isatty()),
            color=use_color(args, out, os.environ),
        )
    except BrokenPipeError:
        # The reader went away (``| head``): not an error, and nothing more to say.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
        return 0
    finally:
        connection.host.close()


def loop(
    args: argparse.Namespace,
    *,
    fetch: Callable[[], Objects],
    out: TextIO,
    err: TextIO,
    tty: bool,
    color: bool,
    catalog: Catalog | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], None] = time.sleep,
    width: Callable[[], int] = _width,
) -> int:
    """Fetch, build, print; with ``--watch`` repeat every ``--interval`` until Ctrl-C.

    Without ``--watch`` an API error exits 1. With it, only a failure of the first
    fetch does; later ones are reported on ``err`` and the next refresh tries again.
    """
    first = True
    try:
        while True:
            try:
                providers, pools = fetch()
            except CapacityError as exc:
                print(f"{PROG}: {exc}", file=err, flush=True)
                if first or not args.watch:
                    return 1
            else:
                report = rendering.build_report(
                    providers,
                    pools,
                    pools_filter=args.pool,
                    regions_filter=args.region,
                    now=clock(),
                )
                if first:
                    for name in rendering.missing_pools(report):
                        print(f"{PROG}: no RegionPool named {name!r}", file=err, flush=True)
                shape = getattr(args, "fit", None)
                if shape is not None:
                    text = render_fit(fit.fit(report, shape, catalog or Catalog()), args.output)
                else:
                    text = render(report, output=args.output, width=width(), color=color)
                if args.watch and tty:
                    text = CLEAR + text
                elif not first:
                    text = ("---\n" if args.output == "yaml" else "\n") + text
                out.write(text)
                out.flush()
                first = False
            if not args.watch:
                return 0
            sleep(args.interval)
    except KeyboardInterrupt:
        if args.watch:
            if tty:
                out.write("\n")
                out.flush()
            return 0
        return 130
