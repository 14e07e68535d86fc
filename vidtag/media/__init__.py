"""Media: from a path to the model's input (paths, probe, sampling, decode, preprocess, shots, clips). Imports only
vidtag.errors and vidtag.models (a model's recipe, the shot network); see docs/architecture.md."""
