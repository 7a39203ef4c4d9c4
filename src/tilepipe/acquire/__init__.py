"""Acquire: find Sentinel-2 scenes (STAC search, sources, signing) and download their windows."""
