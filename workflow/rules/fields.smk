# Field delineation on dr.tif (1 m) or s2.tif (10 m): fields.gpkg and fields.parquet (GPU step).

FD = config["fields"]
FIELDS_IMAGE = {"dr": "dr.tif", "s2": "s2.tif"}[FD["input"]]
FIELDS_PARQUET = {"parquet": f"{SCENE}/fields.parquet"} if FD["geoparquet"] else {}
# the season fusion reads each date's probabilities: kept beside the fields when it is on
FIELDS_PROB = (
    {"prob": f"{SCENE}/fields_prob.tif"} if config["season"]["enabled"] else {}
)
# a two-date model (FTW's released ones) also reads each scene's partner (fields.pairing)
TWO_DATE = fields_dates(config) == 2


FIELDS_PAIR = {"partner": fields_partner} if TWO_DATE else {}


rule fields:
    input:
        **FIELDS_PAIR,
        image=f"{SCENE}/{FIELDS_IMAGE}",
        scl=f"{SCENE}/scl.tif",
        model=repo_path(FD["model"]),
    output:
        **FIELDS_PARQUET,
        **FIELDS_PROB,
        fields=f"{SCENE}/fields.gpkg",
    log:
        "logs/fields/{tile}/{date}.log",
    benchmark:
        "benchmarks/rules/fields/{tile}/{date}.tsv"
    conda:
        "../../envs/torch.yaml"
    container:
        CONTAINERS["gpu"]
    threads: 2
    params:
        settings=settings("fields"),
        parquet=lambda wildcards, output: (
            f"--parquet {output.parquet}" if "parquet" in output.keys() else ""
        ),
        prob=lambda wildcards, output: (
            f"--prob-out {output.prob}" if "prob" in output.keys() else ""
        ),
        pair=pair_flags if TWO_DATE else "",
    shell:
        "tilepipe fields --tile {wildcards.tile} --date {wildcards.date}"
        " --image {input.image} --scl {input.scl} --out {output.fields} {params.parquet}"
        " {params.prob} {params.pair} --model {input.model}"
        " --settings {params.settings:q} > {log} 2>&1"
