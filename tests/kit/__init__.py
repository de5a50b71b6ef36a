"""Every helper of the test suite, importable as `tests.kit.<module>` (no test module imports another):

- tiny: tiny run configs and tiny datasets on disk (avdigits, cremad, folder, text layouts, a tiny RoBERTa)
- training: metrics compared without timings, stop-and-resume through the CLI, a method on a few batches
- augment: the crop-rule check of frame augmentation (CPU and GPU tiers)
- db: scratch PostgreSQL databases, migrated SQLite files and copies, one transaction
- store: the writer tests' runs, epochs and stored points
- api: the in-process API tests' fake dispatcher and worker, configs and counts; fuzz: random request bodies
- svc: service processes (API, workers) on the shared or a test's own stack, the environment they run in
  (`service_env`), a PostgreSQL and a Redis of a test's own, waiting
- procs: processes read from /proc (what a test started is gone afterwards); up: `amst up` in an empty folder
- seeded: runs with realistic curves written into a store (the dashboard's tests and its render benchmark)
- browser: headless Chromium through Playwright
- node: a GPU node's Python imitated here (the offline-install tests); gpu: the GPU tier's skip rule
"""
