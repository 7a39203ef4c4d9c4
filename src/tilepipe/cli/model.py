"""``tilepipe model check MODEL``: what a user runs on a model before a campaign."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``model`` subcommand and its ``check`` action."""
    p = sub.add_parser("model", help="check a model before a campaign (tilepipe model check)")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = actions.add_parser(
        "check",
        help="load a model, run a synthetic batch; print its sidecar, speed and peak memory",
    )
    c.add_argument("model", help="weights file (.pt state_dict, TorchScript, or .pt2) + .json")
    c.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    c.add_argument("--batch", type=int, default=4, help="windows per batch (default: 4)")
    c.add_argument("--patch", type=int, default=64, help="window side in input px (default: 64)")
    c.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    """Print the model's declarations and what one synthetic batch measured."""
    from tilepipe.models.check import check_model

    print(check_model(args.model, args.device, args.batch, args.patch))
