# Two commands for a newcomer: `make demo` and `make test`. Each installs what it needs
# into a local virtual environment (.venv); nothing is installed system-wide except the
# Debian peers (nginx, stunnel) that .ci/run installs for the tests.

PYVER    ?= 3.11
PYTHON   := $(shell scripts/find-python $(PYVER))
VENV     := .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: help bundle-schema bundle-validate wheels venv mlflow model-servers test unit lint typecheck demo bench compat compat-15.4 compat-17.3 compat-3.13 wheel clean

help:
	@echo "make demo   - run the end-to-end story on a local sandbox mesh"
	@echo "make test   - lint, type-check, run the test suite, then the Databricks 15.4 compat run"
	@echo "make bench  - benchmarks (ratios against hand-written requests)"
	@echo "make compat - the core suite against Databricks Runtime 15.4 / 17.3 pins and Python 3.13"
	@echo "make wheel  - build the two wheels (meshclient, meshclient-sandbox) into wheels/"
	@echo "make wheels - the wheels plus an offline wheelhouse per Databricks runtime (wheels/dbr-*)"

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py sandbox/pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python $(PYVER) is required"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]' -e ./sandbox
	rm -f $(VENV)/.installed-* && touch $@

lint: venv
	$(BIN)/ruff check meshclient sandbox tests bench

typecheck: venv
	$(BIN)/mypy

# basic-oauth2-server (an OAuth server nobody here wrote) needs Python >= 3.12: its own venv.
OAUTH2_SERVER := .venv-oauth2/bin/basic-oauth2-server
$(OAUTH2_SERVER):
	$$(scripts/find-python 3.12) -m venv .venv-oauth2
	.venv-oauth2/bin/python -m pip install -q basic-oauth2-server==0.1.6

# pyspark is never a meshclient dependency (it breaks Databricks runtimes); the Spark tests get it here.
PYSPARK := $(VENV)/.pyspark
$(PYSPARK): $(STAMP)
	$(BIN)/python -m pip install -q 'pyspark[connect]>=3.5'
	touch $@

# The MLflow tests run a real `mlflow server` (tracking + artifact proxy) and log an sklearn model:
# full mlflow and scikit-learn, never meshclient dependencies (about 30 s to install).
MLFLOW := $(VENV)/.mlflow
$(MLFLOW): $(STAMP)
	$(BIN)/python -m pip install -q 'mlflow>=2.11' 'scikit-learn>=1.3'
	touch $@

mlflow: $(MLFLOW)

# Model servers the scoring tests score against, each in its own venv (their pins conflict):
# the MLflow scoring server (mlflow + scikit-learn) and KServe's model server (kserve + scikit-learn).
MLFLOW_SERVER := .venv-mlflow/.installed
$(MLFLOW_SERVER):
	test -x .venv-mlflow/bin/python || $(PYTHON) -m venv .venv-mlflow
	.venv-mlflow/bin/python -m pip install -q 'mlflow>=2.11' scikit-learn pandas pyarrow
	touch $@

KSERVE_SERVER := .venv-kserve/.installed
$(KSERVE_SERVER):
	test -x .venv-kserve/bin/python || $(PYTHON) -m venv .venv-kserve
	.venv-kserve/bin/python -m pip install -q 'kserve==0.21.*' scikit-learn
	touch $@

model-servers: $(MLFLOW_SERVER) $(KSERVE_SERVER)

unit: venv $(OAUTH2_SERVER) $(PYSPARK) $(MLFLOW) $(MLFLOW_SERVER) $(KSERVE_SERVER)
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck unit compat-15.4

demo: venv $(PYSPARK) $(MLFLOW) $(MLFLOW_SERVER)
	$(BIN)/meshclient demo

bench: venv $(PYSPARK) $(MLFLOW_SERVER) $(MLFLOW)
	$(BIN)/python bench/run.py
	$(BIN)/python bench/full_stack.py
	$(BIN)/python bench/rotation.py
	$(BIN)/python bench/scoring_spark.py
	$(BIN)/python bench/artifacts_webdav.py
	$(BIN)/python bench/artifacts_mlflow.py

compat: compat-15.4 compat-17.3 compat-3.13

# The runtime matrix (scripts/compat-run): a fresh venv per runtime with meshclient and the runtime's own
# pyspark, mlflow-skinny, pandas and pyarrow under its pins; the core, artifacts/MLflow, scoring and results
# suites (Spark in local mode) against the real MLflow server and model servers of the venvs above.
compat-15.4: $(MLFLOW) $(MLFLOW_SERVER) $(KSERVE_SERVER)
	scripts/compat-run 3.11 compat/dbr-15.4-lts.txt .venv-dbr15.4

compat-17.3: $(MLFLOW) $(MLFLOW_SERVER) $(KSERVE_SERVER)
	scripts/compat-run 3.12 compat/dbr-17.3-lts.txt .venv-dbr17.3

compat-3.13: $(MLFLOW) $(MLFLOW_SERVER) $(KSERVE_SERVER)
	scripts/compat-run 3.13 "" .venv-py3.13

# Two distributions: the library (what clusters install) and the sandbox (tests, demos).
wheel: venv
	rm -rf build sandbox/build
	$(BIN)/python -m pip wheel --no-deps -w wheels . ./sandbox

# The wheels plus, per runtime in compat/, an offline wheelhouse: what meshclient[databricks] needs that the
# runtime lacks (pip install --no-index --find-links wheels/dbr-15.4 'meshclient[databricks]' on a cluster).
wheels: wheel
	$(BIN)/python scripts/wheelhouse.py compat/dbr-15.4-lts.txt 3.11 wheels/dbr-15.4
	$(BIN)/python scripts/wheelhouse.py compat/dbr-17.3-lts.txt 3.12 wheels/dbr-17.3

clean:
	rm -rf $(VENV) .venv-* build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache

# The bundle against Databricks' own tools, where the Databricks CLI (>= 0.218, the Go binary from the
# databricks/cli GitHub releases; not on PyPI) is installed. tests/core/test_bundle.py validates
# bundle/databricks.yml with jsonschema against the schema saved here (else against databricks-bundles' models).
bundle-schema:
	@command -v databricks >/dev/null || { echo "bundle-schema needs the Databricks CLI (github.com/databricks/cli releases)"; exit 1; }
	mkdir -p bundle/.databricks
	databricks bundle schema > bundle/.databricks/schema.json.tmp && mv bundle/.databricks/schema.json.tmp bundle/.databricks/schema.json

# `bundle validate` resolves the workspace (current user, paths): it needs DATABRICKS_HOST and credentials.
bundle-validate:
	@command -v databricks >/dev/null || { echo "bundle-validate needs the Databricks CLI (github.com/databricks/cli releases)"; exit 1; }
	cd bundle && databricks bundle validate -t dev
