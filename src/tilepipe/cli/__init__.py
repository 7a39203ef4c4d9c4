"""The ``tilepipe`` command: one subcommand per workflow step, each usable without Snakemake.

Each step lives in its own module here (``cli/fields.py`` …) and registers its subparser; a
step reads its config section from ``--settings`` (defaults from the config schema), see
``cli/options.py``. Errors tilepipe expects (bad input, bad model, bad config) print one line
naming the tile, date, file and cause, and exit with status 2; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence

from tilepipe import __version__
from tilepipe.cli import (
    campaign,
    catalog,
    classify,
    demo,
    download,
    embeddings,
    fields,
    model,
    plan,
    qc,
    report,
    search,
    season,
    status,
    superres,
    train,
)
from tilepipe.core.errors import Terminated, TilepipeError, context

log = logging.getLogger("tilepipe")

#: the modules whose ``register`` adds their subcommands, in the order ``--help`` lists them
STEPS = (
    demo,
    search,
    download,
    superres,
    fields,
    season,
    campaign,
    qc,
    embeddings,
    train,
    classify,
    report,
    catalog,
)
TOOLS = (status, plan, model)


@functools.lru_cache(maxsize=1)
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand, built once per process (10 ms each time: a
    warm worker runs ``main`` once per scene; parsing leaves the parser unchanged)."""
    parser = argparse.ArgumentParser(prog="tilepipe", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"tilepipe {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="STEP")
    for module in (*STEPS, *TOOLS):
        module.register(sub)
    return parser


def _on_sigterm(signum: int, frame: object) -> None:
    """Turn SIGTERM into an exception: outputs in progress unwind and resume state is kept."""
    raise Terminated("SIGTERM (preemption or time limit); resume state kept, rerun to continue")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tilepipe`` command."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from tilepipe.acquire.transfer import RedactingFilter, proxy_environment, redact

    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())
    os.environ.update(proxy_environment(os.environ))
    func: Callable[[argparse.Namespace], None] = args.func
    started = time.perf_counter()
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        func(args)
    except Terminated as exc:
        print(f"tilepipe {args.command}: terminated: {exc}", file=sys.stderr)
        return 128 + signal.SIGTERM  # the status a shell reports for SIGTERM; Slurm requeues
    except TilepipeError as exc:
        print(f"tilepipe {args.command}: error: {redact(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:  # the machine's fault, not the data's: full disk, permissions, I/O
        where = context(getattr(args, "tile", None), getattr(args, "date", None))
        print(f"tilepipe {args.command}: error: {where}{redact(str(exc))}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)
    log.info("tilepipe %s finished in %.1f s", args.command, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
