# Field delineation on dr.tif (1 m) or s2.tif (10 m): fields.gpkg and fields.parquet (GPU step).

FD = config["fields"]
FIELDS_IMAGE = {"dr": "dr.tif", "s2": "s2.tif"}[FD["input"]]
FIELDS_PARQUET = {"parquet": f"{SCENE}/fields.parquet"} if FD["geoparquet"] else {}


rule fields:
    input:
        image=f"{SCENE}/{FIELDS_IMAGE}",
        model=repo_path(FD["model"]),
    output:
        **FIELDS_PARQUET,
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
    shell:
        "tilepipe fields --tile {wildcards.tile} --date {wildcards.date}"
        " --image {input.image} --out {output.fields} {params.parquet} --model {input.model}"
        " --settings {params.settings:q} > {log} 2>&1"
