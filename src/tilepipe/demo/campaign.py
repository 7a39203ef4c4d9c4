"""The embedded demo campaign: a synthetic, physically shaped Sentinel-2 world generated offline.

:func:`generate_campaign` writes a whole campaign from the demo world (:mod:`.world`): a static
STAC catalog of L2A-like items with COG assets per band (:mod:`.stac`), TESSERA embeddings in
geotessera's layout (:mod:`.tessera`), AEF COGs with their index (:mod:`.aef`) and labelled
field polygons (:mod:`.labels`). Everything is derived
from a seed, so tests, benchmarks and the demo see the same world.
"""

from __future__ import annotations

import json
from datetime import date as Date
from pathlib import Path

import numpy as np
import pystac
from affine import Affine

from tilepipe.core.grid import tile_grid
from tilepipe.core.raster import atomic_output
from tilepipe.demo.aef import write_aef_demo, write_aef_index
from tilepipe.demo.labels import label_features, write_labels
from tilepipe.demo.stac import flavour_collection, new_catalog, save_catalog, write_item
from tilepipe.demo.tessera import (
    SOURCE_COOP,
    STORE_DIR,
    class_centroids,
    pixel_vectors,
    write_registry,
    write_source_coop,
    write_store,
    write_tessera,
)
from tilepipe.demo.world import (
    DEMO_DATES,
    DEMO_NEIGHBOURS,
    DEMO_TILES,
    Scene,
    demo_window,
    observe_neighbour,
    render_scene,
    tile_seed,
)

SCALE = 10  # 1 m truth pixels per 10 m pixel side
LABEL_ID_STEP = 1000  # field ids of the n-th tile (from 0) are (n + 1) * 1000 + its field id


def _write_items(
    root: Path,
    tile: str,
    dates: tuple[str, ...],
    tseed: int,
    transform: Affine,
    size: int,
    provider: str = "demo",
) -> list[pystac.Item]:
    """Render and write one item per date of a tile (the n-th date is scene n of its seed)."""
    items = []
    for d_index, day in enumerate(dates):
        scene = render_scene(tseed, size, size, d_index)
        day_ = Date.fromisoformat(day)
        items.append(write_item(root, tile, day_, d_index, scene, transform, size, provider))
    return items


def _write_neighbour_items(
    root: Path,
    tile: str,
    source: str,
    dates: tuple[str, ...],
    seed: int,
    size: int,
    provider: str = "demo",
) -> list[pystac.Item]:
    """Write a neighbour's items: each date of ``source``'s world seen on ``tile``'s grid."""
    transform, width, _ = demo_window(tile, size)
    items = []
    for d_index, day in enumerate(dates):
        world = render_scene(tile_seed(source, seed), size, size, d_index)
        scene, valid = observe_neighbour(world, tile, source, size, tile_seed(tile, seed), d_index)
        day_ = Date.fromisoformat(day)
        items.append(
            write_item(root, tile, day_, d_index, scene, transform, width, provider, valid=valid)
        )
    return items


def _write_embeddings(
    root: Path,
    tile: str,
    years: list[int],
    clear: Scene,
    transform: Affine,
    tseed: int,
    centroids: np.ndarray,
) -> list[tuple[int, str]]:
    """Write a tile's TESSERA cells for each year (noise seeded by tile and year); their cells."""
    crs = tile_grid(tile).crs
    size = clear.lr.shape[-1]
    rows = []
    for year in years:
        vectors = pixel_vectors(clear, size, centroids, np.random.default_rng([tseed, year]))
        rows += write_tessera(root, crs, year, vectors, transform)
    return rows


def _write_json(path: Path, data: dict) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


def generate_campaign(
    out_dir: str | Path,
    *,
    tiles: tuple[str, ...] = DEMO_TILES,
    dates: tuple[str, ...] = DEMO_DATES,
    size: int = 160,
    seed: int = 0,
    provider: str = "demo",
) -> dict[str, str]:
    """Write the demo campaign under ``out_dir``; return the paths of its entry points.

    ``size`` is the side of each tile's window in 10 m pixels (160 → 1.6 km, 1,600 px at 1 m).
    ``provider`` shapes the STAC items as that service publishes them (demo.stac.FLAVOURS).
    A neighbour (DEMO_NEIGHBOURS: 34UBU over 33UXP's window, across the UTM zone edge) gets
    items of the same ground when its source is among ``tiles``: no embeddings, AEF or labels
    of its own, since its source's already cover that ground (labels twice would put one field
    in both the training and the test split).
    """
    out = Path(out_dir)
    stac_root, tessera_root, aef_root = out / "stac", out / "tessera", out / "aef"
    catalog, collection = new_catalog(flavour_collection(provider))
    centroids = class_centroids(seed)
    years = sorted({Date.fromisoformat(d).year for d in dates})
    registry: list[tuple[int, str]] = []
    labels: list[dict] = []
    for t_index, tile in enumerate(tiles):
        if tile in DEMO_NEIGHBOURS:
            if DEMO_NEIGHBOURS[tile] not in tiles:
                raise ValueError(f"demo tile {tile} sees {DEMO_NEIGHBOURS[tile]}'s world: add it")
            items = _write_neighbour_items(
                stac_root, tile, DEMO_NEIGHBOURS[tile], dates, seed, size, provider
            )
            for item in items:
                collection.add_item(item)
            continue
        tseed = tile_seed(tile, seed)
        transform, width, height = demo_window(tile, size)
        for item in _write_items(stac_root, tile, dates, tseed, transform, width, provider):
            collection.add_item(item)
        clear = render_scene(tseed, width, height, 0, cloud=False)
        registry += _write_embeddings(tessera_root, tile, years, clear, transform, tseed, centroids)
        for year in years:
            write_aef_demo(aef_root, tile, year, size=size, seed=seed)
        id_base = (t_index + 1) * LABEL_ID_STEP
        labels += label_features(tile, clear, transform, SCALE, id_base=id_base)
    save_catalog(catalog, collection, stac_root)
    write_registry(tessera_root, registry)
    source_coop = write_source_coop(tessera_root, registry, out / SOURCE_COOP)
    write_store(tessera_root, registry, out / STORE_DIR)
    write_aef_index(aef_root)
    write_labels(out / "labels.gpkg", labels)
    manifest = {
        "catalog": str((stac_root / "catalog.json").resolve()),
        "tessera": str(tessera_root.resolve()),
        "tessera_sc": str((out / SOURCE_COOP).resolve()),
        "tessera_npy": str(source_coop.resolve()),
        "tessera_store": str((out / STORE_DIR).resolve()),
        "aef": str(aef_root.resolve()),
        "labels": str((out / "labels.gpkg").resolve()),
        "tiles": list(tiles),
        "dates": list(dates),
        "size": size,
        "seed": seed,
    }
    _write_json(out / "demo.json", manifest)
    return manifest
