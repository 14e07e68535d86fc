"""Records on disk: the writers (JSONL, JSON, CSV), the one reader, and the safe writes every output shares."""
