# Campaign-wide products: a STAC item and a fields partition per tile-date (rewritten only when
# that scene's outputs change), and the cheap campaign step that links the items.


rule stac_item:
    input:
        # ancient: a re-run search changes a scene only through its `item` param
        manifest=ancient(MANIFEST),
        s2=f"{SCENE}/s2.tif",
        scl=f"{SCENE}/scl.tif",
        dr=f"{SCENE}/dr.tif",
        fields=f"{SCENE}/fields.parquet",
        gpkg=f"{SCENE}/fields.gpkg",
        qc=f"{SCENE}/qc.json",
    output:
        item=f"{SCENE}/item.json",
    log:
        "logs/stac_item/{tile}/{date}.log",
    benchmark:
        "benchmarks/rules/stac_item/{tile}/{date}.tsv"
    conda:
        "../../envs/geo.yaml"
    container:
        CONTAINERS["cpu"]
    params:
        item=item_of,
        collection=COLLECTION,
        settings=settings("catalog"),
    shell:
        "tilepipe stac-item --tile {wildcards.tile} --date {wildcards.date}"
        " --s2 {input.s2} --scl {input.scl} --dr {input.dr} --fields {input.fields}"
        " --fields-gpkg {input.gpkg} --qc {input.qc} --manifest {input.manifest}"
        " --collection {params.collection} --settings {params.settings:q}"
        " --out {output.item} > {log} 2>&1"


rule fields_partition:
    input:
        fields=f"{SCENE}/fields.parquet",
    output:
        part=f"{FIELDS_DATASET}/tile={{tile}}/date={{date}}/part.parquet",
    log:
        "logs/fields_partition/{tile}/{date}.log",
    benchmark:
        "benchmarks/rules/fields_partition/{tile}/{date}.tsv"
    conda:
        "../../envs/geo.yaml"
    container:
        CONTAINERS["cpu"]
    shell:
        "tilepipe fields-partition --tile {wildcards.tile} --date {wildcards.date}"
        " --fields {input.fields} --out {output.part} > {log} 2>&1"


rule stac_collection:
    input:
        manifest=ancient(MANIFEST),
        scene_items=lambda wildcards: scene_outputs(["item.json"]),
        parts=fields_partitions,
    output:
        collection=COLLECTION,
    log:
        "logs/stac_collection/collection.log",
    benchmark:
        "benchmarks/rules/stac_collection/collection.tsv"
    conda:
        "../../envs/geo.yaml"
    container:
        CONTAINERS["cpu"]
    params:
        fields=FIELDS_DATASET,
        settings=settings("catalog"),
    shell:
        # the items are listed from the manifest: 10,000 paths would overflow a command line
        "tilepipe stac-collection --manifest {input.manifest} --results results"
        " --fields-root {params.fields}"
        " --settings {params.settings:q} --out {output.collection} > {log} 2>&1"
