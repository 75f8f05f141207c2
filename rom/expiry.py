"""Removing expired entities: the sweep, the ``python -m rom expire`` job and the reaper.

Declaring expiry and using it on entities is described in :doc:`/guide/expiring`
(``Model._ttl``, ``expire_in()``, ``expire_at()``, ``persist()``, ``ttl()``). Expired
entities are invisible to every read at once; this module removes them (each atomically
with its index entries, unique claims and bookkeeping, ``on_delete`` policies applied).
Writes of a model already remove a few due entities of that model; use these for the rest.
"""
from __future__ import annotations

from ._expiry import (WRITE_SWEEP, WRITE_SWEEP_INTERVAL, ExpiryJob, Reaper, SweepResult,
                      asweep, expiring_models, sweep)

__all__ = ['ExpiryJob', 'Reaper', 'SweepResult', 'WRITE_SWEEP', 'WRITE_SWEEP_INTERVAL',
           'asweep', 'expiring_models', 'sweep']
