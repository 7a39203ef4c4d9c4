# Season field layers: per tile and season window, the dates' kept fields probabilities and SCL
# masks fused into one layer (each field once, with the dates it was seen clear on).

SEASON_DIR = "results/{tile}/season/{season}"
SEASON_PARQUET = {"parquet": f"{SEASON_DIR}/fields.parquet"} if FD["geoparquet"] else {}


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
        dates=lambda wildcards: " ".join(season_dates(wildcards)),
        parquet=lambda wildcards, output: (
            f"--parquet {output.parquet}" if "parquet" in output.keys() else ""
        ),
    shell:
        "tilepipe season --tile {wildcards.tile} --season {wildcards.season}"
        " --dates {params.dates} --prob {input.prob} --scl {input.scl}"
        " --out {output.fields} {params.parquet} --min-clear-share {params.min_clear}"
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
