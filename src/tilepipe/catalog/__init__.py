"""Campaign-wide products: a STAC catalog of the outputs and one fields dataset for the campaign.

``item`` writes one STAC item per tile-date beside its outputs, ``fields`` one hive partition of
the campaign's fields per tile-date, ``collection`` the cheap campaign step that links them, and
``schemas`` the published STAC JSON schemas gathered for offline validation.
"""
