# Season field layers: per tile and season window, the dates' kept fields probabilities and SCL
# masks fused into one layer (each field once, with the dates it was seen clear on); per season,
# the tiles' classified layers joined into the campaign's, each field once across tile overlaps.

SEASON_DIR = "results/{tile}/season/{season}"
SEASON_PARQUET = {"parquet": f"{SEASON_DIR}/fields.parquet"} if FD["geoparquet"] else {}
# the campaign's season layer: every tile's season layer, each field once across tile overlaps
CAMPAIGN_SEASON = "results/campaign/season/{season}"
CAMPAIGN_SEASON_PARQUET = (
    {"parquet": f"{CAMPAIGN_SEASON}/fields.parquet"} if FD["geoparquet"] else {}
)


rule season_fields:
    input:
        prob=season_files("fields_prob.tif"),
        scl=season_files("scl.tif"),
    output:
        **SEASON_PARQUET,
        fields=f"{SEASON_DIR}/fields.gpkg",
    log:
        "logs/season_fields/{tile}/{season}.log",
    benchmark:
        "benchmarks/rules/season_fields/{tile}/{season}.tsv"
    conda:
        "../../envs/geo.yaml"
    container:
        CONTAINERS["cpu"]
    params:
        settings=settings("fields"),
        min_clear=config["season"]["min_clear_share"],
        edge_ramp=config["season"]["edge_ramp_m"],
        dates=lambda wildcards: " ".join(season_dates(wildcards)),
        parquet=lambda wildcards, output: (
            f"--parquet {output.parquet}" if "parquet" in output.keys() else ""
        ),
    shell:
        "tilepipe season --tile {wildcards.tile} --season {wildcards.season}"
        " --dates {params.dates} --prob {input.prob} --scl {input.scl}"
        " --out {output.fields} {params.parquet} --min-clear-share {params.min_clear}"
        " --edge-ramp-m {params.edge_ramp}"
        " --settings {params.settings:q} > {log} 2>&1"


rule season_classify:
    input:
        fields=f"{SEASON_DIR}/fields.gpkg",
        embeddings=season_embeddings,
        model="results/models/classifier.cbm",
    output:
        classified=f"{SEASON_DIR}/fields_classified.gpkg",
    log:
        "logs/season_classify/{tile}/{season}.log",
    benchmark:
        "benchmarks/rules/season_classify/{tile}/{season}.tsv"
    conda:
        "../../envs/classify.yaml"
    container:
        CONTAINERS["cpu"]
    shell:
        "tilepipe classify --tile {wildcards.tile} --date {wildcards.season}"
        " --fields {input.fields} --embeddings {input.embeddings} --model {input.model}"
        " --out {output.classified} > {log} 2>&1"


rule season_qc_classification:
    input:
        classified=f"{SEASON_DIR}/fields_classified.gpkg",
    output:
        qc=f"{SEASON_DIR}/classification_qc.json",
    log:
        "logs/season_qc_classification/{tile}/{season}.log",
    benchmark:
        "benchmarks/rules/season_qc_classification/{tile}/{season}.tsv"
    conda:
        "../../envs/geo.yaml"
    container:
        CONTAINERS["cpu"]
    params:
        settings=settings("qc"),
    shell:
        "tilepipe qc-classification --tile {wildcards.tile} --date {wildcards.season}"
        " --classified {input.classified} --settings {params.settings:q}"
        " --out {output.qc} > {log} 2>&1"


rule campaign_fields:
    input:
        layers=season_layers,
    output:
        **CAMPAIGN_SEASON_PARQUET,
        fields=f"{CAMPAIGN_SEASON}/fields.gpkg",
        stats=f"{CAMPAIGN_SEASON}/dedupe.json",
    log:
        "logs/campaign_fields/{season}.log",
    benchmark:
        "benchmarks/rules/campaign_fields/{season}.tsv"
    conda:
        "../../envs/geo.yaml"
    container:
        CONTAINERS["cpu"]
    params:
        layers=lambda wildcards, input: " ".join(
            f"--layer {t}={path}"
            for t, path in zip(season_tiles(wildcards), input.layers)
        ),
        windows=lambda wildcards: " ".join(
            f"--window {t}={tile_window_arg(config, t)}"
            for t in season_tiles(wildcards)
        ),
        parquet=lambda wildcards, output: (
            f"--parquet {output.parquet}" if "parquet" in output.keys() else ""
        ),
        min_overlap=config["season"]["min_overlap"],
    shell:
        "tilepipe campaign-fields --season {wildcards.season} {params.layers}"
        " {params.windows} --min-overlap {params.min_overlap} --out {output.fields}"
        " {params.parquet} --stats {output.stats}"
        " > {log} 2>&1"
