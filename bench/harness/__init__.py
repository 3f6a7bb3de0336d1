"""The benchmark harness behind `make bench` (bench/run.py is its command line).

One module per step of the pipeline, so that each can be read, and changed, alone:

* start: `stack` (our compose stack), `containers` (peers, framework ceiling and clones of
  our API beside it, under our API's limits), `baseline` (the image of ours at a baseline
  revision, from a git worktree), `contract` (the peers answer with our JSON);
* measure: `load` (wrk, the fixed-rate generator bench/loadgen.py, pgbench), `cgroup` (CPU
  time of a container), `pgmonitor` (PostgreSQL connections), `footprint` (image sizes,
  memory, cold start, rebuild);
* run: `comparison` (the whole `make bench` run), `tune` (configurations side by side);
* analyse and report: `records` (what a run measured, as written to latest.json),
  `analysis` (medians, ratios, targets), `report` (latest.md and the console), `chart`.

`config` holds what every step shares: names, images, peers, targets and durations.
"""
