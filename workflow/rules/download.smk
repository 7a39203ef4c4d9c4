# Scene search (builds the manifest the DAG is planned from) and per-scene download.

if DEMO["generate"]:

    rule demo_campaign:
        output:
            catalog=f"{DEMO['out']}/stac/catalog.json",
            registry=f"{DEMO['out']}/tessera/registry.tsv",
            labels=f"{DEMO['out']}/labels.gpkg",
        log:
            "logs/demo_campaign/demo.log",
        benchmark:
            "benchmarks/rules/demo_campaign/demo.tsv"
        conda:
            "../../envs/geo.yaml"
        container:
            CONTAINERS["cpu"]
        params:
            out=lambda wildcards, output: str(Path(output.catalog).parents[1]),
            tiles=" ".join(TILES),
            size=DEMO["size"],
            seed=DEMO["seed"],
        shell:
            "tilepipe demo --out {params.out} --tiles {params.tiles} --size {params.size}"
            " --seed {params.seed} > {log} 2>&1"


checkpoint search_scenes:
    input:
        demo_input("catalog"),
    output:
        manifest=MANIFEST,
    log:
        "logs/search_scenes/search.log",
    benchmark:
        "benchmarks/rules/search_scenes/search.tsv"
    conda:
        "../../envs/geo.yaml"
    container:
        CONTAINERS["cpu"]
    resources:
        **{CONNECTIONS: 1},
        network=1,
    params:
        catalog=lambda wildcards, input: (
            input[0] if input else config["source"]["catalog"]
        ),
        source=SOURCE_JSON,
        window=WINDOW,
        collection=(  # none named: the provider's current collection
            f"--collection {config['source']['collection']}"
            if config["source"].get("collection")
            else ""
        ),
        tiles=" ".join(TILES),
        start=config["dates"]["start"],
        end=config["dates"]["end"],
        max_cloud=config["source"]["max_cloud"],
        max_dates=(
            f"--max-dates {config['source']['max_dates_per_tile']}"
            if config["source"]["max_dates_per_tile"]
            else ""
        ),
    shell:
        "tilepipe search --catalog {params.catalog:q} {params.collection}"
        " --tiles {params.tiles} --start {params.start} --end {params.end}"
        " --max-cloud {params.max_cloud} {params.max_dates} --window {params.window}"
        " --source {params.source:q} --out {output.manifest} > {log} 2>&1"


rule download:
    input:
        # ancient: a re-run search changes a scene only through its `item` param
        manifest=ancient(MANIFEST),
    output:
        s2=f"{SCENE}/s2.tif",
        scl=f"{SCENE}/scl.tif",
    log:
        "logs/download/{tile}/{date}.log",
    benchmark:
        "benchmarks/rules/download/{tile}/{date}.tsv"
    conda:
        "../../envs/geo.yaml"
    container:
        CONTAINERS["cpu"]
    resources:
        **{CONNECTIONS: config["source"]["job_connections"]},
        network=1,
    params:
        item=item_of,
        window=WINDOW,
        source=SOURCE_JSON,
    shell:
        "tilepipe download --tile {wildcards.tile} --date {wildcards.date}"
        " --manifest {input.manifest} --window {params.window} --source {params.source:q}"
        " --s2 {output.s2} --scl {output.scl} > {log} 2>&1"
