"""Kept embeddings: the store, a zero-shot model's text side, retag and search (no decoding)."""
