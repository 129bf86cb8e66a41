# Two commands on a fresh machine with python3 and make: `make demo` and `make test`
# (`make demo-browser` for the SPA sample in a browser).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SPA := samples/spa
SPA_DEPS := $(SPA)/node_modules/.package-lock.json
AZURITE := tests/azurite

SOAK_MINUTES ?= 10

.PHONY: venv test lint typecheck pytest redis-server browser-deps azurite docs dist demo demo-browser bench soak emulator clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[redis,azure,testing,docs,dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check flask_obo tests samples benchmarks docs

typecheck: $(STAMP)
	$(VENV)/bin/mypy --strict flask_obo

# The Redis tests need a redis-server binary: installed when missing and running as root
# (Debian), as `make bench` does for wrk; otherwise they are skipped with the reason shown
# (with CI=true a missing redis-server fails them: .ci/run installs it).
pytest: $(STAMP) redis-server browser-deps azurite
	$(VENV)/bin/pytest -q

# Azurite (the Azure Storage emulator) for the Azure SDK tests, pinned in tests/azurite: installed
# with npm ci when npm exists (without it those tests skip, or fail under CI=true).
$(AZURITE)/node_modules/.installed: $(AZURITE)/package-lock.json
	cd $(AZURITE) && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $@

azurite:
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory $(AZURITE)/node_modules/.installed; \
	else echo "npm not found: the Azurite tests will be skipped"; fi

redis-server:
	@command -v redis-server >/dev/null 2>&1 || [ -x /usr/sbin/redis-server ] || [ -n "$$REDIS_SERVER" ] \
		|| [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null \
		|| { (apt-get install -y -q redis-server >/dev/null 2>&1 \
		      || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		          apt-get install -y -q redis-server >/dev/null 2>&1)) \
		     && { service redis-server stop >/dev/null 2>&1 || true; }; } \
		|| echo "redis-server not installed: the Redis tests will be skipped"

# The browser tests' needs: MSAL.js from the lockfile (npm ci), and Debian's Chromium when
# running as root with apt. Where either cannot be had, the browser tests skip (fail if CI=true).
browser-deps: $(SPA_DEPS)
	@command -v chromium >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null \
		|| { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
		|| echo "chromium not installed: the browser tests will skip"

$(SPA_DEPS): $(SPA)/package.json $(SPA)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd $(SPA) && npm ci --no-audit --no-fund --loglevel=error \
		|| echo "npm ci failed: the browser tests will skip"; \
	else echo "npm not found: the browser tests will skip"; fi


test: lint typecheck docs pytest

# The documentation site, warnings as errors; offline (no intersphinx).
docs: $(STAMP)
	$(VENV)/bin/sphinx-build -W --keep-going -q -b html docs docs/_build/html

# The sdist and wheel, as PyPI would take them.
dist: $(STAMP)
	rm -rf dist
	$(PY) -m build --no-isolation --sdist --wheel --outdir dist . >/dev/null
	$(VENV)/bin/twine check --strict dist/*

demo: $(STAMP)
	$(PY) -m samples.demo

demo-browser: $(STAMP) $(SPA_DEPS)
	$(PY) -m samples.demo_browser

emulator: $(STAMP)
	$(PY) -m flask_obo.testing serve

# wrk is the preferred load generator: installed when missing and running as root (Debian),
# else benchmarks/loadgen.py's Python generator is used.
bench: $(STAMP)
	@command -v wrk >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null \
		|| apt-get install -y -q wrk >/dev/null 2>&1 || echo "wrk not installed: using the Python load generator"
	$(PY) -m benchmarks.run
	$(PY) -m benchmarks.soak --minutes $(SOAK_MINUTES)

# The soak alone: `make soak SOAK_MINUTES=2` for a short run (SOAK_MINUTES=0 skips it in bench).
soak: $(STAMP)
	$(PY) -m benchmarks.soak --minutes $(SOAK_MINUTES)

clean:
	rm -rf $(VENV) build dist *.egg-info docs/_build docs/_generated $(SPA)/node_modules test-artifacts $(AZURITE)/node_modules
