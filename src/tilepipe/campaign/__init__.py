"""The campaign: its configuration, plan, status of every tile-date, and Snakemake locks."""
