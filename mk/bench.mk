# Benchmark targets (bench/); included by the Makefile. Needs docker with the
# Compose and buildx plugins, and wrk (bench/run.py installs Debian's package
# when it is missing and it runs as root). See bench/README.md.
BENCH_VENV ?= bench/.venv
BENCH_PYTHON := $(BENCH_VENV)/bin/python
# Extra arguments for bench/run.py, e.g. BENCH_ARGS="--reps 5" or "--ours-env 'WORKERS=2'".
BENCH_ARGS ?=

.PHONY: bench bench-smoke bench-venv

# matplotlib for the chart lives in a venv of its own, not in the project's.
$(BENCH_VENV)/.installed: bench/requirements.txt
	$(or $(PYTHON),python3) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	touch $@

bench-venv: $(BENCH_VENV)/.installed

bench: bench-venv  ## Benchmark ours vs the peers vs this machine's limits (~15 min) -> bench/results/
	$(BENCH_PYTHON) bench/run.py $(BENCH_ARGS)

bench-smoke: bench-venv  ## The benchmark harness end to end in about a minute (CI; timings meaningless)
	$(BENCH_PYTHON) bench/run.py --smoke $(BENCH_ARGS)
