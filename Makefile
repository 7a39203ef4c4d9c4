# The two commands of the README: `make demo` (set-up + demo campaign) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0

.PHONY: demo test test-fast lint clean-demo

PINS := containers/requirements-cpu.txt

$(BIN)/.installed: pyproject.toml $(PINS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# the runtime pins the container images use, so the tests run exactly what the images ship;
	# all but the torch line itself (torch is $(TORCH): the +cpu local version is the images')
	grep -v '^torch==' $(PINS) > $(VENV)/constraints.txt
	# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build
	$(BIN)/pip install --quiet -c $(VENV)/constraints.txt $(TORCH)
	$(BIN)/pip install --quiet -c $(VENV)/constraints.txt -e '.[workflow,dev]'
	touch $@

# geotessera itself, the oracle tests/embeddings/test_geotessera_oracle.py compares tilepipe's
# TESSERA reader with: its own interpreter, so its ~80 pinned dependencies stay out of tilepipe's
GEOTESSERA := .venv-geotessera
$(GEOTESSERA)/.installed: tests/oracles/geotessera-0.7.5.txt
	$(PYTHON) -m venv $(GEOTESSERA)
	$(GEOTESSERA)/bin/pip install --quiet --upgrade pip
	$(GEOTESSERA)/bin/pip install --quiet -r $<
	touch $@

# fiboa-cli, the fiboa validator tests/validators.py runs on fields.parquet: its own interpreter,
# as it pins pyarrow<24 and fsspec 2025.7.0 (tilepipe has newer); not part of `make test`, since
# it fetches its schemas from fiboa.org, vecorel.org and geoparquet.org (docs/fields.md)
FIBOA := .venv-fiboa
$(FIBOA)/.installed: tests/oracles/fiboa-cli-0.21.0.txt
	$(PYTHON) -m venv $(FIBOA)
	$(FIBOA)/bin/pip install --quiet --upgrade pip
	$(FIBOA)/bin/pip install --quiet -r $<
	touch $@

demo: $(BIN)/.installed
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/snakemake --profile profiles/local
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/snakemake --profile profiles/local --report report.html
	@echo "Done: outputs in results/, open report.html (see README: 'Where the outputs are')."

# the whole suite (CI): every tier, real Snakemake, Slurm and kill trials included
test: $(BIN)/.installed $(GEOTESSERA)/.installed
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest -q

# the fast tier for development: the package's tests, without tests/workflow/ (Snakemake
# processes, profile dry-runs, bad-input runs) and without the Slurm cluster (docs/testing.md)
test-fast: $(BIN)/.installed
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest -q -m "not workflow and not slurm" \
		--ignore=tests/workflow

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests scripts benchmarks
	$(BIN)/ruff format --check src tests scripts benchmarks
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile workflow/rules

clean-demo:
	rm -rf results logs manifests demo_data benchmarks/rules report.html .snakemake
