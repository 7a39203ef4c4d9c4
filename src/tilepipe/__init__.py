"""tilepipe: Sentinel-2 tiles to super-resolved imagery, fields, QC and crop classes."""

__version__ = "0.1.0"
