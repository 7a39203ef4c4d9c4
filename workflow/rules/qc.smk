# Quality control of each scene: grid, orientation, nodata, cloud, reflectance, DR consistency,
# field sanity -> qc.json with pass / warn / fail.


rule qc:
    input:
        s2=f"{SCENE}/s2.tif",
        scl=f"{SCENE}/scl.tif",
        dr=f"{SCENE}/dr.tif",
        fields=f"{SCENE}/fields.gpkg",
    output:
        qc=f"{SCENE}/qc.json",
    log:
        "logs/qc/{tile}/{date}.log",
    benchmark:
        "benchmarks/rules/qc/{tile}/{date}.tsv"
    conda:
        "../../envs/geo.yaml"
    container:
        CONTAINERS["cpu"]
    params:
        settings=settings("qc"),
    shell:
        "tilepipe qc --tile {wildcards.tile} --date {wildcards.date} --s2 {input.s2}"
        " --scl {input.scl} --dr {input.dr} --fields {input.fields}"
        " --settings {params.settings:q} --out {output.qc} > {log} 2>&1"


rule qc_classification:
    input:
        classified=f"{SCENE}/fields_classified.gpkg",
    output:
        qc=f"{SCENE}/classification_qc.json",
    log:
        "logs/qc_classification/{tile}/{date}.log",
    benchmark:
        "benchmarks/rules/qc_classification/{tile}/{date}.tsv"
    conda:
        "../../envs/geo.yaml"
    container:
        CONTAINERS["cpu"]
    params:
        settings=settings("qc"),
    shell:
        "tilepipe qc-classification --tile {wildcards.tile} --date {wildcards.date}"
        " --classified {input.classified} --settings {params.settings:q}"
        " --out {output.qc} > {log} 2>&1"
