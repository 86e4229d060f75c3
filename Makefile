# `make demo`: set up and run weightkit on the shipped fixtures. `make test`: set up and run the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HASH := $(shell cksum < pyproject.toml | cut -d' ' -f1)
BASE := $(VENV)/.base-$(HASH)
FULL := $(VENV)/.full-$(HASH)

.PHONY: setup browser demo test test-fast fuzz fixtures bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# weightkit alone: what a user installs (no TensorFlow).
$(BASE): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

# weightkit with the test tools, the framework oracles (TensorFlow, tf_keras, Keras 3), the
# HTML report's plotly and the remote extra (fsspec, s3fs, gcsfs, aiohttp; the test extra brings
# the S3 and GCS emulators); Playwright drives Debian's Chromium (never `playwright install`).
# The TF.js converter too (tests/test_tfjs_keras3.py runs it), without the dependencies that
# would replace this TensorFlow (see fixtures/make_fixtures.py, part_tfjs).
$(FULL): $(BASE)
	$(BIN)/python -m pip install -q -e '.[test,tensorflow,report,remote]'
	$(BIN)/python -m pip install -q --no-deps tensorflowjs==4.22.0
	touch $@

# Debian's Chromium for the HTML report tests (CI runs as root on a fresh machine). If it cannot
# be installed, tests/test_report_html.py skips and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	} || echo "make: chromium could not be installed; the HTML report tests will skip"

# TF.js in node: the tfjs tests' oracle and fixture writer (tests/js/package-lock.json).
JS := tests/js/node_modules/.package-lock.json
$(JS): tests/js/package-lock.json
	cd tests/js && npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(FULL) browser $(JS)

demo: $(BASE)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash fixtures/demo.sh

# weightkit's own modules compiled once: the tests start hundreds of commands in subprocesses, and
# with PYTHONDONTWRITEBYTECODE set each compiled them again (0.1-0.2 s each; CI 14.6 -> 12.9 min).
test: $(FULL) browser $(JS)
	$(BIN)/python -m compileall -q cli converters diff api.py __init__.py
	$(BIN)/python -m pytest -q

test-fast: $(FULL) $(JS)
	$(BIN)/python -m pytest -q -m "not tensorflow"

# The long fuzz run: WEIGHTKIT_FUZZ_SECONDS per format (CI runs 4 s each inside `make test`).
fuzz: $(FULL)
	WEIGHTKIT_FUZZ_SECONDS=$${WEIGHTKIT_FUZZ_SECONDS:-300} $(BIN)/python -m pytest -q tests/test_fuzz.py

# The TF.js converter pins an older TensorFlow: installed without its dependencies (see part_tfjs).
fixtures: $(FULL) $(JS)
	$(BIN)/python -m pip install -q --no-deps tensorflowjs==4.22.0
	$(BIN)/python fixtures/make_fixtures.py

# Speed and memory against the peers, same run (bench/run.py). `make bench SIZE=64` is a quick run.
SIZE ?= 1024
bench: $(FULL)
	command -v h5diff >/dev/null || apt-get install -y hdf5-tools || true
	$(BIN)/python bench/run.py --size $(SIZE) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) demo-out .pytest_cache
