# Two entry points, each doing the whole set-up on a fresh machine:
#   make demo   install, then run the main job on the bundled example data
#   make test   install, then run the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
CLI    := $(VENV)/bin/prom3e-geo
OUT    ?= demo-out

.PHONY: install demo test test-min lint typecheck bench clean

install: $(VENV)/.installed

# torch goes first and pinned, so that nothing later can pull a CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch>=2.13,<2.14"
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps geoclip==1.3.0  # location weights only; never imported
	touch $@

demo: install
	mkdir -p $(OUT)
	$(CLI) sdm --query examples/cardinal.jpg --out $(OUT)/map.tif --png $(OUT)/map.png --overwrite
	$(CLI) uncertainty --context loc --out $(OUT)/sigma.tif --png $(OUT)/sigma.png --overwrite
	$(CLI) diversity --observations examples/observations.csv \
		--out $(OUT)/diversity.tif --zarr $(OUT)/diversity.zarr --png $(OUT)/diversity.png --overwrite
	$(CLI) compare --uncertainty $(OUT)/sigma.tif --diversity $(OUT)/diversity.tif --png $(OUT)/compare.png --overwrite
	@echo "Outputs in $(OUT)/: open the .tif files in QGIS, diversity.zarr in xarray."

# Two workers: most tests run the CLI as whole processes; `worksteal` keeps both busy to the
# end while a module's tests (and its fixtures) mostly stay on one worker.
TEST_WORKERS ?= 2
test: install
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal

# the suite on the lowest versions pyproject declares: proof that its floors are honest
test-min:
	$(PYTHON) -m venv .venv-min
	.venv-min/bin/python -m pip install --quiet --upgrade pip
	$(PYTHON) scripts/min_requirements.py > .venv-min/requirements-min.txt
	.venv-min/bin/python -m pip install --quiet -r .venv-min/requirements-min.txt
	.venv-min/bin/python -m pip install --quiet --no-deps -e . geoclip==1.3.0
	! .venv-min/bin/python -m pip check | grep -v '^geoclip '  # geoclip: weights only, no deps
	.venv-min/bin/python -m pytest -q

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

typecheck: install
	$(VENV)/bin/mypy

bench: install
	$(PY) benchmarks/diversity.py --parquet-rows 100000000
	$(PY) benchmarks/model.py
	$(PY) benchmarks/encoders.py

clean:
	rm -rf $(VENV) .venv-min $(OUT)
