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
        settings=settings("superres"),
        # static: the model file is an input only with method `model`
        model_flag="--model" if SR["method"] == "model" else "",
    shell:
        "tilepipe superres --tile {wildcards.tile} --date {wildcards.date} --s2 {input.s2}"
        " --out {output.dr} {params.model_flag} {input.model}"
        " --settings {params.settings:q} > {log} 2>&1"
