"""``tilepipe train``: train the CatBoost crop classifier (config section ``classify``)."""

from __future__ import annotations

import argparse
import json
import logging

from tilepipe.cli.options import add_settings, step_settings
from tilepipe.core.errors import ConfigError

log = logging.getLogger("tilepipe")

KEYS = (
    "labels",
    "iterations",
    "test_fraction",
    "seed",
    "class_weights",
    "spatial_block_m",
    "task_type",
    "baseline_k",
    "invalid_labels",
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand."""
    p = sub.add_parser("train", help="train the CatBoost crop classifier")
    p.add_argument("--embeddings", nargs="+", required=True, help="TILE=embeddings.tif ...")
    p.add_argument("--model-out", required=True)
    p.add_argument("--metrics-out", required=True)
    add_settings(p, "classify", KEYS)
    p.set_defaults(func=run)


def embedding_pairs(items: list[str]) -> dict[str, str]:
    """``TILE=PATH`` arguments as a mapping tile -> embeddings raster."""
    pairs = {}
    for item in items:
        tile, sep, path = item.partition("=")
        if not sep:
            raise ConfigError(f"--embeddings expects TILE=PATH, got {item!r}")
        pairs[tile] = path
    return pairs


def run(args: argparse.Namespace) -> None:
    """Train on the labelled fields' embeddings and write the model and its metrics."""
    from tilepipe.classify.train import train_classifier

    settings = step_settings(args, need=("labels",))
    metrics = train_classifier(
        settings["labels"],
        embedding_pairs(args.embeddings),
        args.model_out,
        args.metrics_out,
        test_fraction=settings["test_fraction"],
        seed=settings["seed"],
        iterations=settings["iterations"],
        class_weights=settings["class_weights"] == "balanced",
        spatial_block_m=settings["spatial_block_m"],
        task_type=settings["task_type"],
        baseline_k=settings["baseline_k"],
        invalid_labels=settings["invalid_labels"],
    )
    log.info("classifier trained: %s", json.dumps(metrics, default=str))
