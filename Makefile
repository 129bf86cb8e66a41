# Two commands on a fresh machine with python3 and make: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

SOAK_MINUTES ?= 10

.PHONY: venv test lint typecheck pytest demo bench soak emulator clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[redis,testing,dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check flask_obo tests samples benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy --strict flask_obo

pytest: $(STAMP)
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
	$(PY) -m benchmarks.soak --minutes $(SOAK_MINUTES)

# The soak alone: `make soak SOAK_MINUTES=2` for a short run (SOAK_MINUTES=0 skips it in bench).
soak: $(STAMP)
	$(PY) -m benchmarks.soak --minutes $(SOAK_MINUTES)

clean:
	rm -rf $(VENV) build *.egg-info
