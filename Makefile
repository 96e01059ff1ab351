# Two commands run everything: `make demo` and `make test`. Both start with `make install`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

DATA        ?= $(CURDIR)/data
DEMO_METERS ?= 1000
DEMO_DAYS   ?= 60
DEMO_UI_PORT  ?= 3000
DEMO_API_PORT ?= 8000
DEMO_START  := $(shell date -u -d "$(DEMO_DAYS) days ago" +%Y-%m-%d)
YESTERDAY   := $(shell date -u -d "1 day ago" +%Y-%m-%d)

export METER_DATA_DIR ?= $(DATA)
export METER_LAKE ?= $(DATA)/lake

.PHONY: install test test-image test-fast lint demo bench bench-tools lock clean

install: $(STAMP)

$(STAMP): requirements-dev.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

# On two workers (pytest-xdist), one per core (three were no faster: docs/testing.md), a test
# module per worker at a time, in the order conftest.py sets (the longest first; xdist would
# otherwise reorder them by test count). The image has its own target: `make test-image`.
TEST_WORKERS ?= 2
test: install
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=25 --ignore=$(IMAGE_TESTS)

# The container image built as a deployment builds it (deploy/image.sh) and started: its base and
# its dependency layer are kept in BUILDAH_ROOT between runs, so a change to the code rebuilds
# only the layer that copies it. CI runs it after `make test`.
IMAGE_TESTS := meter_assets_tests/test_image.py
export BUILDAH_ROOT ?= $(HOME)/.cache/meter-platform/buildah
test-image: install
	$(BIN)/pytest -q --durations=5 $(IMAGE_TESTS)

# The tests that need no server, lake or browser (pricing, arrivals on a local lake, tokens,
# settings, the definitions): seconds, for the edit-test loop; `make test` still runs everything.
FAST_TESTS := meter_assets_tests/test_pricing.py meter_assets_tests/test_tokens.py \
              meter_assets_tests/test_arrivals.py meter_assets_tests/test_definitions.py \
              meter_assets_tests/test_config.py meter_assets_tests/test_sql_style.py
test-fast: install
	$(BIN)/pytest -q -k "not s3" --hypothesis-profile=fast $(FAST_TESTS)

# Lint and format check (ruff, configured in pyproject.toml); `ruff format .` fixes the format.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# A fresh simulated retailer. Dagster's UI (127.0.0.1:3000) starts at once, its log in data/,
# while the demo materializes every partition in the background (a line a step; the runs appear
# in the UI as they are made) and the usage API and page (127.0.0.1:8000) answer. Ctrl-C stops
# Dagster, then the API, the demo and the embedded PostgreSQL.
demo: install
	rm -rf $(DATA)/lake $(DATA)/dagster_home $(DATA)/postgres
	DAGSTER_HOME=$(DATA)/dagster_home $(BIN)/python -m meter_assets.demo --instance-from dagster.yaml
	$(BIN)/meter-sim generate --meters $(DEMO_METERS) --start $(DEMO_START) --days $(DEMO_DAYS) --nem12 --quiet
	$(BIN)/meter-sim release-late --until $(YESTERDAY) --quiet
	@export DAGSTER_HOME=$(DATA)/dagster_home; \
	$(BIN)/meter-api serve --host 127.0.0.1 --port $(DEMO_API_PORT) > $(DATA)/meter-api.log 2>&1 & api=$$!; \
	PYTHONUNBUFFERED=1 $(BIN)/python -m meter_assets.demo --start $(DEMO_START) --days $(DEMO_DAYS) \
	    --ui-url http://127.0.0.1:$(DEMO_UI_PORT) --base-url http://127.0.0.1:$(DEMO_API_PORT) & demo=$$!; \
	trap 'kill $$api $$demo 2>/dev/null; wait $$api $$demo; $(BIN)/meter-db stop' EXIT INT TERM; \
	echo "Dagster UI: http://127.0.0.1:$(DEMO_UI_PORT) (its log: $(DATA)/dagster-dev.log); Ctrl-C stops it all"; \
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p $(DEMO_UI_PORT) > $(DATA)/dagster-dev.log 2>&1

# Full scale: 200,000 meters, one day (and a small day's memory with hostile files); the
# sensor against a year of raw keys; a month's
# bills; 90 days of the serving table, the API under load and the page in Chromium; the
# operations report of a day; the load forecast on two years of history and on real,
# public demand (several seasons of each series); the scaling curve from 50,000 to 400,000
# meters (README's chart).
bench: install bench-tools
	$(BIN)/python bench/foundation.py --meters 200000
	$(BIN)/python bench/hostile.py
	$(BIN)/python bench/sensor.py --days 365
	$(BIN)/python bench/billing.py --meters 200000
	$(BIN)/python bench/serving.py --meters 200000
	$(BIN)/python bench/report.py --meters 200000
	$(BIN)/python bench/estimation.py --meters 200000
	$(BIN)/python bench/estimation_accuracy.py --sets sceaux uk_heated_0 uk_heated_1 uk_heated_2 --trials 300 --months
	$(BIN)/python bench/estimation_accuracy.py --sets simulated --trials 48
	$(BIN)/python bench/forecast.py --meters 200000
	$(BIN)/python bench/real_demand.py
	$(BIN)/python bench/scaling.py

# Debian's wrk (load generator) and chromium with its driver, for the serving benchmark.
bench-tools:
	@command -v wrk >/dev/null && command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	{ sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$sudo apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q --no-install-recommends wrk chromium chromium-driver; }

# Re-resolve the lock files after changing dependencies in pyproject.toml: the development
# one (`make install`), then the image's (`Dockerfile`), held to the same versions.
lock:
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --no-header -o requirements-dev.lock
	$(BIN)/uv pip compile pyproject.toml -c requirements-dev.lock --python-version 3.11 --no-header -o requirements.lock

clean:
	rm -rf $(VENV) $(DATA) .pytest_cache
