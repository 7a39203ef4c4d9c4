"""Fetch one TESSERA cell with geotessera itself: the oracle the embeddings tests compare with.

Run by the oracle's own interpreter (``.venv-geotessera``, geotessera 0.7.5 pinned in
``geotessera-0.7.5.txt``), never imported by tilepipe's tests. Usage::

    python geotessera_fetch.py BASE VERSION EMBEDDINGS_DIR CACHE_DIR YEAR LON LAT OUT.npy

``BASE``/``VERSION`` replace ``https://dl2.geotessera.org``/``v1``: geotessera downloads
``{BASE}/{VERSION}/registry.parquet``, ``landmasks.parquet`` and the cell's files into
``EMBEDDINGS_DIR`` (SHA-256 verified against the registry), or, with ``BASE`` ``local``, reads
``EMBEDDINGS_DIR`` as a filled mirror (registries in it). Writes the dequantised (H, W, 128)
array to ``OUT.npy`` and prints ``{"crs", "transform"}`` of its landmask as JSON.
"""

import json
import sys

import geotessera.registry
import numpy as np
from geotessera import GeoTessera

base, version, embeddings_dir, cache_dir, year, lon, lat, out = sys.argv[1:]
if base == "local":
    gt = GeoTessera(embeddings_dir=embeddings_dir, registry_dir=embeddings_dir, cache_dir=cache_dir)
else:
    geotessera.registry.TESSERA_BASE_URL = base  # read when the registry and each file load
    gt = GeoTessera(version, cache_dir=cache_dir, embeddings_dir=embeddings_dir)
embedding, crs, transform = gt.fetch_embedding(float(lon), float(lat), int(year))
np.save(out, embedding)
print(json.dumps({"crs": crs.to_string(), "transform": list(transform)[:6]}))
