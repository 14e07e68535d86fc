"""Results: the record and its settings, ranking, aggregation, segments, calibration applied, and making a
record from a file's probabilities. Imports vidtag.errors, models and media; see docs/architecture.md."""
