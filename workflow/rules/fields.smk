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
        threshold=FD["threshold"],
        seed_threshold=FD["seed_threshold"],
        min_area=FD["min_area_m2"],
        max_area=(
            f"--max-area-m2 {FD['max_area_m2']}"
            if FD["max_area_m2"] is not None
            else ""
        ),
        simplify=FD["simplify_m"],
        fill_holes=FD["fill_holes_m2"],
        block=FD["block"],
        halo=FD["halo"],
        parquet=lambda wildcards, output: (
            f"--parquet {output.parquet}" if "parquet" in output.keys() else ""
        ),
        patch=FD["patch"],
        overlap=FD["overlap"],
        batch=FD["batch"],
        device=FD["device"],
    shell:
        "tilepipe fields --tile {wildcards.tile} --date {wildcards.date}"
        " --image {input.image} --out {output.fields} {params.parquet} --model {input.model}"
        " --threshold {params.threshold} --seed-threshold {params.seed_threshold}"
        " --min-area-m2 {params.min_area} {params.max_area} --simplify-m {params.simplify}"
        " --fill-holes-m2 {params.fill_holes} --block {params.block} --halo {params.halo}"
        " --patch {params.patch} --overlap {params.overlap}"
        " --batch {params.batch} --device {params.device} > {log} 2>&1"
