# Two commands on a fresh machine with python3 and make: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test lint typecheck pytest azurite demo bench emulator clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[redis,azure,testing,dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check flask_obo tests samples benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy --strict flask_obo

# Azurite (the Azure Storage emulator) for the Azure SDK tests, pinned in tests/azurite: installed
# with npm ci when npm exists (without it those tests skip, or fail under CI=true).
AZURITE := tests/azurite
$(AZURITE)/node_modules/.installed: $(AZURITE)/package-lock.json
	cd $(AZURITE) && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $@

azurite:
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory $(AZURITE)/node_modules/.installed; \
	else echo "npm not found: the Azurite tests will be skipped"; fi

pytest: $(STAMP) azurite
	$(VENV)/bin/pytest -q

test: lint typecheck pytest

demo: $(STAMP)
	$(PY) -m samples.demo

emulator: $(STAMP)
	$(PY) -m flask_obo.testing serve

# wrk is the preferred load generator: installed when missing and running as root (Debian),
# else benchmarks/loadgen.py's Python generator is used.
bench: $(STAMP)
	@command -v wrk >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null \
		|| apt-get install -y -q wrk >/dev/null 2>&1 || echo "wrk not installed: using the Python load generator"
	$(PY) -m benchmarks.run

clean:
	rm -rf $(VENV) build *.egg-info $(AZURITE)/node_modules
