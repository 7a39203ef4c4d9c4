# tilepipe: Sentinel-2 tiles -> 10x super-resolution -> fields -> QC -> crop classes.
# Thin entry: load and validate the config, include one rule file per stage, define `all`.
from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

from tilepipe.campaign.config import coerce_types, config_problems, load_schema
from tilepipe.core.settings import schema_path

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


# the one config schema, shipped inside the package (steps read their defaults from it too)
_schema = str(schema_path())
_schema_dict = load_schema(_schema)
config.update(
    coerce_types(dict(config), _schema_dict)
)  # --config passes nested values as text
_problems = config_problems(config, _schema_dict)
if _problems:
    raise WorkflowError("invalid configuration:\n  - " + "\n  - ".join(_problems))
validate(config, _schema)


include: "workflow/rules/common.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/superres.smk"
include: "workflow/rules/fields.smk"
include: "workflow/rules/season.smk"
include: "workflow/rules/qc.smk"
include: "workflow/rules/classify.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/catalog.smk"


rule all:
    default_target: True
    input:
        final_outputs,
        catalog_outputs,
