# Field delineation on the super-resolved scene, polygonised to fields.gpkg (GPU step).

FD = config["fields"]


rule fields:
    input:
        dr=f"{SCENE}/dr.tif",
        model=repo_path(FD["model"]),
    output:
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
        min_area=FD["min_area_m2"],
        patch=FD["patch"],
        overlap=FD["overlap"],
        batch=FD["batch"],
        device=FD["device"],
    shell:
        "tilepipe fields --tile {wildcards.tile} --date {wildcards.date} --dr {input.dr}"
        " --out {output.fields} --model {input.model} --threshold {params.threshold}"
        " --min-area-m2 {params.min_area} --patch {params.patch} --overlap {params.overlap}"
        " --batch {params.batch} --device {params.device} > {log} 2>&1"
