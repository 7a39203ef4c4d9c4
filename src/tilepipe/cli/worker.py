"""``tilepipe worker``: a GPU worker of a pool (config ``workers``), on a GPU node.

It listens on TCP, registers in the spool, and runs the scenes' ``superres`` and ``fields``
that their jobs hand it, with torch imported and each model loaded once, until it has been idle
for ``--idle`` seconds. The scenes' jobs start it themselves (``workers.start``); by hand it
serves any campaign that uses the same spool.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``worker`` subcommand."""
    p = sub.add_parser("worker", help="a GPU worker of a pool: runs many scenes' GPU steps")
    p.add_argument("--spool", required=True, type=Path, help="the pool's spool directory")
    p.add_argument("--idle", type=float, default=60.0, help="exit after this many idle seconds")
    p.add_argument("--name", default=None, help="the worker's name (default: host-pid)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    """Serve the pool until idle."""
    from tilepipe.worker.server import serve

    name = args.name or f"{socket.gethostname()}-{os.getpid()}"
    status = serve(name, args.idle, args.spool.resolve())
    if status:
        sys.exit(status)
