"""Values of the ``crop`` column that are not crops, and the class raster's nodata."""

UNKNOWN = "unknown"


SKIPPED = "qc_fail"  # crop of fields of a scene kept out of classification by its QC


CLASS_NODATA = 255  # class raster value outside embeddings coverage
