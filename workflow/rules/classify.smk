# Embeddings per tile-year, the campaign's CatBoost classifier, crop class per field.

CL = config["classify"]


rule embeddings:
    input:
        demo_input("registry"),
    output:
        embeddings="results/{tile}/{year}/embeddings.tif",
    log:
        "logs/embeddings/{tile}/{year}.log",
    benchmark:
        "benchmarks/rules/embeddings/{tile}/{year}.tsv"
    conda:
        "../../envs/classify.yaml"
    container:
        CONTAINERS["cpu"]
    resources:
        network=1,
    params:
        source=lambda wildcards, input: (
            str(Path(input[0]).parent) if input else config["embeddings"]["source"]
        ),
        window=tile_window,
        settings=settings("embeddings"),
    shell:
        "tilepipe embeddings --tile {wildcards.tile} --year {wildcards.year}"
        " --source {params.source:q} --window {params.window} --out {output.embeddings}"
        " --settings {params.settings:q} > {log} 2>&1"


rule train_classifier:
    input:
        labels=demo_input("labels") or CL["labels"],
        embeddings=expand(
            "results/{tile}/{year}/embeddings.tif", tile=TILES, year=CL["year"]
        ),
    output:
        model="results/models/classifier.cbm",
        metrics="results/models/classifier_metrics.json",
    log:
        "logs/train_classifier/classifier.log",
    benchmark:
        "benchmarks/rules/train_classifier/classifier.tsv"
    conda:
        "../../envs/classify.yaml"
    container:
        CONTAINERS["cpu"]
    threads: 2
    params:
        pairs=lambda wildcards, input: " ".join(
            f"{tile}={path}" for tile, path in zip(TILES, input.embeddings)
        ),
        # the gate and the class raster choose other rules' inputs, not the training
        settings=settings("classify", "skip_failed_qc", "class_raster"),
    shell:
        "tilepipe train --labels {input.labels} --embeddings {params.pairs}"
        " --model-out {output.model} --metrics-out {output.metrics}"
        " --settings {params.settings:q} > {log} 2>&1"


rule classify:
    input:
        fields=f"{SCENE}/fields.gpkg",
        embeddings=lambda wildcards: f"results/{wildcards.tile}/{wildcards.date[:4]}/embeddings.tif",
        model="results/models/classifier.cbm",
        # classify.skip_failed_qc: the scene's finished qc.json decides, inside the job
        qc=f"{SCENE}/qc.json" if CL["skip_failed_qc"] else [],
    output:
        classified=f"{SCENE}/fields_classified.gpkg",
    log:
        "logs/classify/{tile}/{date}.log",
    benchmark:
        "benchmarks/rules/classify/{tile}/{date}.tsv"
    conda:
        "../../envs/classify.yaml"
    container:
        CONTAINERS["cpu"]
    params:
        # static (no per-job function: planning 10^4 scenes stays fast); {input.qc} is empty
        # unless the gate is on
        qc_flag="--qc" if CL["skip_failed_qc"] else "",
    shell:
        "tilepipe classify --tile {wildcards.tile} --date {wildcards.date}"
        " --fields {input.fields} --embeddings {input.embeddings} --model {input.model}"
        " {params.qc_flag} {input.qc} --out {output.classified} > {log} 2>&1"


rule class_raster:
    input:
        embeddings="results/{tile}/{year}/embeddings.tif",
        model="results/models/classifier.cbm",
    output:
        classes="results/{tile}/{year}/crop_classes.tif",
    log:
        "logs/class_raster/{tile}/{year}.log",
    benchmark:
        "benchmarks/rules/class_raster/{tile}/{year}.tsv"
    conda:
        "../../envs/classify.yaml"
    container:
        CONTAINERS["cpu"]
    shell:
        "tilepipe class-raster --tile {wildcards.tile} --year {wildcards.year}"
        " --embeddings {input.embeddings} --model {input.model} --out {output.classes}"
        " > {log} 2>&1"
