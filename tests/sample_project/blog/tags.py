"""Tags: a module the tests import lazily, inside a test (its models must stay registered)."""
from __future__ import annotations

import rom


class Tag(rom.Model):
    post = rom.ManyToOne('Post', on_delete='cascade')
    name = rom.Text(required=True, index=True, keygen=rom.IDENTITY)
