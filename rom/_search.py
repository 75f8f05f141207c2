"""Index search: compiles filter records into Redis work (stub, filled by the query work)."""
from __future__ import annotations


class GeneralIndex:
    """Per-model search engine bound to a namespace."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
