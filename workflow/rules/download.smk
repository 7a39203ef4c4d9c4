# Scene search (builds the manifest the DAG is planned from) and per-scene download.

if DEMO["generate"]:

    rule demo_campaign:
        output:
            catalog=f"{DEMO['out']}/stac/catalog.json",
            registry=f"{DEMO['out']}/tessera/registry.parquet",
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
            settings=settings("demo"),
        shell:
            "tilepipe demo --out {params.out} --tiles {params.tiles}"
            " --settings {params.settings:q} > {log} 2>&1"


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
        settings=settings("source"),
        window=WINDOW,
        overrides=window_overrides(),
        tiles=" ".join(TILES),
        start=config["dates"]["start"],
        end=config["dates"]["end"],
    shell:
        "tilepipe search --catalog {params.catalog:q} --tiles {params.tiles}"
        " --start {params.start} --end {params.end} --window {params.window}"
        " {params.overrides} --settings {params.settings:q} --out {output.manifest} > {log} 2>&1"


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
        window=tile_window,
        settings=settings("source"),
        # the further bands the models reading s2.tif take: a new model's bands redownload
        bands=",".join(download_bands(config)) or "''",
    shell:
        "tilepipe download --tile {wildcards.tile} --date {wildcards.date}"
        " --manifest {input.manifest} --window {params.window} --settings {params.settings:q}"
        " --bands {params.bands} --s2 {output.s2} --scl {output.scl} > {log} 2>&1"
