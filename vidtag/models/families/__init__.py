"""Model families. Each module exposes `load(spec, weights, labels) -> vidtag.models.loading.LoadedNet`."""
