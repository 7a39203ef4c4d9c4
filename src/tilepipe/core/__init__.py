"""The small core every stage uses: errors, raster I/O, the MGRS grid, checksums, GeoParquet."""
