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

# geotessera >= 0.8 (Zarr stores per UTM zone, manifest.parquet) needs Python >= 3.12: the
# oracle of tests/embeddings/test_geotessera_store_oracle.py gets its own venv when an
# interpreter is found (PATH, then pyenv); without one those tests skip, saying so
PYTHON312 ?= $(shell for p in $(wildcard $(HOME)/.pyenv/versions/3.1[2-9]*/bin/python3) \
	$$(command -v python3.12 python3.13); do \
	$$p -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null && { echo $$p; break; }; done)
GEOTESSERA_NEW := .venv-geotessera-0.11
$(GEOTESSERA_NEW)/.installed: tests/oracles/geotessera-0.11.0.txt
	@if [ -z "$(PYTHON312)" ]; then \
		echo "no Python >= 3.12 found: the geotessera 0.11 oracle tests will skip"; \
	else \
		$(PYTHON312) -m venv $(GEOTESSERA_NEW) && \
		$(GEOTESSERA_NEW)/bin/pip install --quiet --upgrade pip && \
		$(GEOTESSERA_NEW)/bin/pip install --quiet -r $< && touch $@; \
	fi

# segmentation-models-pytorch (tilepipe's `ftw` extra), the torchvision of torch 2.13.0 and
# Lightning, for tests/models/test_ftw.py: its own interpreter, as torchvision must stay out of
# .venv (its CUDA build's C++ ops do not load beside the CPU torch; tilepipe.models.ftw copes)
FTW := .venv-ftw
$(FTW)/.installed: pyproject.toml $(PINS) tests/oracles/ftw.txt
	$(PYTHON) -m venv $(FTW)
	$(FTW)/bin/pip install --quiet --upgrade pip
	grep -v '^torch==' $(PINS) > $(FTW)/constraints.txt
	$(FTW)/bin/pip install --quiet -c $(FTW)/constraints.txt $(TORCH)
	$(FTW)/bin/pip install --quiet -c $(FTW)/constraints.txt -r tests/oracles/ftw.txt -e '.[ftw]'
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
test: $(BIN)/.installed $(GEOTESSERA)/.installed $(GEOTESSERA_NEW)/.installed $(FTW)/.installed
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
