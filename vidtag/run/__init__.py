"""The run: settings, the resolved job, the engines (local, Ray), the worker pool, CPU sharing, and the runner
with the Python API `classify`. Imports every stage below it; see docs/architecture.md."""
