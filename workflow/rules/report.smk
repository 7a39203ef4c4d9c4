# Report artefacts for `snakemake --report`: quicklooks per scene and the campaign QC summary.


rule quicklook:
    input:
        s2=f"{SCENE}/s2.tif",
        dr=f"{SCENE}/dr.tif",
        fields=f"{SCENE}/fields.gpkg",
    output:
        rgb=report(
            f"{SCENE}/quicklook_rgb.png",
            caption="../report/quicklook_rgb.rst",
            category="Scenes",
            subcategory="{tile} {date}",
            labels={
                "tile": "{tile}",
                "date": "{date}",
                "view": "1 Sentinel-2 RGB (10 m)",
            },
        ),
        dr=report(
            f"{SCENE}/quicklook_dr.png",
            caption="../report/quicklook_dr.rst",
            category="Scenes",
            subcategory="{tile} {date}",
            labels={"tile": "{tile}", "date": "{date}", "view": "2 DR RGB (1 m)"},
        ),
        fields=report(
            f"{SCENE}/quicklook_fields.png",
            caption="../report/quicklook_fields.rst",
            category="Scenes",
            subcategory="{tile} {date}",
            labels={"tile": "{tile}", "date": "{date}", "view": "3 fields over DR"},
        ),
    log:
        "logs/quicklook/{tile}/{date}.log",
    benchmark:
        "benchmarks/rules/quicklook/{tile}/{date}.tsv"
    conda:
        "../../envs/geo.yaml"
    container:
        CONTAINERS["cpu"]
    params:
        settings=settings("report"),
    shell:
        "tilepipe quicklook --s2 {input.s2} --dr {input.dr} --fields {input.fields}"
        " --rgb {output.rgb} --dr-png {output.dr} --fields-png {output.fields}"
        " --settings {params.settings:q} > {log} 2>&1"


rule qc_summary:
    input:
        qc=lambda wildcards: scene_outputs(["qc.json"]),
        classification_qc=lambda wildcards: scene_outputs(["classification_qc.json"]),
        metrics="results/models/classifier_metrics.json",
        manifest=ancient(MANIFEST),
    output:
        html=report(
            "results/qc_summary.html",
            caption="../report/qc_summary.rst",
            category="QC summary",
        ),
        tsv="results/qc_summary.tsv",
        csv="results/qc/summary.csv",
        status=report(
            "results/qc/qc_status.png",
            caption="../report/qc_plots.rst",
            category="QC summary",
            labels={"plot": "verdicts per check"},
        ),
        values=report(
            "results/qc/qc_values.png",
            caption="../report/qc_plots.rst",
            category="QC summary",
            labels={"plot": "check values and thresholds"},
        ),
        confusion=report(
            "results/qc/confusion_matrix.png",
            caption="../report/confusion_matrix.rst",
            category="QC summary",
            labels={"plot": "confusion matrices (held-out fields)"},
        ),
    log:
        "logs/qc_summary/summary.log",
    benchmark:
        "benchmarks/rules/qc_summary/summary.tsv"
    conda:
        "../../envs/geo.yaml"
    container:
        CONTAINERS["cpu"]
    shell:
        # the scenes' QC files are listed from the manifest: 10,000 paths would overflow a
        # command line
        "tilepipe qc-summary --manifest {input.manifest} --results results"
        " --with-classification-qc --metrics {input.metrics} --out {output.html}"
        " --summary-csv {output.csv}"
        " --status-png {output.status} --values-png {output.values}"
        " --confusion-png {output.confusion} > {log} 2>&1"
