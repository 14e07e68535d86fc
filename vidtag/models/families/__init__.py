"""Model families. Each module with a loader exposes `load(spec, weights, labels) -> vidtag.models.families.base.LoadedNet`."""
