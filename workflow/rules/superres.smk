# 10x "Deep Resolution" super-resolution of each scene (GPU step on clusters).

SR = config["superres"]


rule superres:
    input:
        s2=f"{SCENE}/s2.tif",
        model=repo_path(SR["model"]) if SR["method"] == "model" else [],
    output:
        dr=f"{SCENE}/dr.tif",
    log:
        "logs/superres/{tile}/{date}.log",
    benchmark:
        "benchmarks/rules/superres/{tile}/{date}.tsv"
    conda:
        "../../envs/torch.yaml"
    container:
        CONTAINERS["gpu"]
    threads: 2
    params:
        method=f"--method {SR['method']}",
        model_flag="--model" if SR["method"] == "model" else "",
        patch=SR["patch"],
        overlap=SR["overlap"],
        batch=SR["batch"],
        device=SR["device"],
        precision=SR["precision"],
        flags=" ".join(
            f"--{key}" for key in ("compile", "cog", "overviews") if SR[key]
        )
        + ("" if SR["resume"] else " --no-resume"),
    shell:
        "tilepipe superres --tile {wildcards.tile} --date {wildcards.date} --s2 {input.s2}"
        " --out {output.dr} {params.method} {params.model_flag} {input.model}"
        " --patch {params.patch}"
        " --overlap {params.overlap} --batch {params.batch} --device {params.device}"
        " --precision {params.precision} {params.flags} > {log} 2>&1"
