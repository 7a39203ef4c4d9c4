"""geotessera 0.11's own answers for the Zarr-store and manifest tests: run by its interpreter.

Run by ``.venv-geotessera-0.11`` (geotessera 0.11.0 pinned in ``geotessera-0.11.0.txt``,
Python >= 3.12), never imported by tilepipe's tests. Usage::

    python geotessera_store.py read-region STORE ZONE YEAR LEFT BOTTOM RIGHT TOP OUT.npy
    python geotessera_store.py footprint LON LAT
    python geotessera_store.py fetch ROOT_URL CACHE_DIR EMBEDDINGS_DIR YEAR LON LAT OUT.npy

``read-region`` opens STORE with ``GeoTesseraZarr`` and reads the zone's window over the UTM
bounds with ``TesseraAccessor.read_region`` (dequantised, native grid): the (H, W, B) array goes
to OUT.npy and ``{"crs", "transform"}`` is printed as JSON. ``footprint`` prints the UTM grid
geotessera gives the 0.1° cell centred at (LON, LAT) (``geotessera.zarr.project_tile``).
``fetch`` reads a tree laid out as on Source Cooperative at ROOT_URL (in place of
``https://data.source.coop/tessera/tessera``) with ``GeoTessera("v1").fetch_embedding``: the
``npy/v1/manifest.parquet``, ``landmasks/v1/landmasks.parquet`` and the cell's files (checked
against the server's MD5 ETags); the (H, W, 128) array goes to OUT.npy and ``{"crs",
"transform"}`` of its landmask is printed as JSON.
"""

import json
import sys

import numpy as np

command, *args = sys.argv[1:]
if command == "read-region":
    from geotessera.store import GeoTesseraZarr

    store, zone, year, left, bottom, right, top, out = args
    gt = GeoTesseraZarr(store)
    ds = gt.open_zone(zone=int(zone))
    bounds = (float(left), float(bottom), float(right), float(top))
    mosaic, transform = ds.tessera.read_region(bounds, int(year))
    np.save(out, mosaic)
    print(json.dumps({"crs": ds.tessera.crs, "transform": list(transform)[:6]}))
elif command == "footprint":
    from geotessera.zarr import project_tile

    info = project_tile(float(args[0]), float(args[1]))
    print(
        json.dumps(
            {
                "crs": f"EPSG:{info.epsg}",
                "transform": list(info.transform)[:6],
                "height": info.height,
                "width": info.width,
            }
        )
    )
elif command == "fetch":
    import geotessera.registry
    from geotessera import GeoTessera

    root, cache_dir, embeddings_dir, year, lon, lat, out = args
    geotessera.registry.TESSERA_NPY_MIRROR_URL = f"{root}/npy"  # read when each URL is made
    geotessera.registry.TESSERA_LANDMASKS_MIRROR_URL = f"{root}/landmasks"
    gt = GeoTessera("v1", cache_dir=cache_dir, embeddings_dir=embeddings_dir)
    embedding, crs, transform = gt.fetch_embedding(float(lon), float(lat), int(year))
    np.save(out, embedding)
    print(json.dumps({"crs": crs.to_string(), "transform": list(transform)[:6]}))
else:
    raise SystemExit(f"unknown command {command!r}")
