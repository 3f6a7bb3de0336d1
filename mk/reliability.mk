# The reliability suite (tests/reliability/): faults, load and hostile input against the real
# stack. `make test` runs it at CI sizes; these targets run it bigger and render its report.
RELIABILITY_SCALE ?= 4

.PHONY: reliability reliability-report

# The report is rendered even when a scenario failed (it says which); the exit status is the suite's.
reliability: venv  ## Reliability suite at RELIABILITY_SCALE (4), then docs/RELIABILITY.md
	RELIABILITY_SCALE=$(RELIABILITY_SCALE) $(BIN)/pytest tests/reliability -p no:cacheprovider -s; \
	status=$$?; $(BIN)/python tools/reliability_report.py && exit $$status

reliability-report: venv  ## Render docs/RELIABILITY.md from the last reliability run's results
	$(BIN)/python tools/reliability_report.py
