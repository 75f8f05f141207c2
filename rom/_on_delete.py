"""on_delete policies: what deleting an entity does to the entities that refer to it.

Used by the delete operation (``rom._ops_delete``); models spec §3.5 (breadth first,
restrict before any write). The lookups of referencing entities are I/O steps.
"""
from __future__ import annotations

from typing import Any, List, Tuple

from ._io import Operation
from ._registry import MODELS, MODELS_REFERENCED, NULL
from .exceptions import RestrictError


def _references_to(model: Any) -> List[Tuple[str, str, str]]:
    """``MODELS_REFERENCED`` entries naming ``model`` by namespace or by class name (B2)."""
    model = getattr(model, '_shard_public', None) or model  # sharding hook: a shard's refs
    refs = list(MODELS_REFERENCED.get(model._namespace, ()))
    if model.__name__ != model._namespace:
        refs += [r for r in MODELS_REFERENCED.get(model.__name__, ()) if r not in refs]
    return refs


def op_referencing(model: Any, attr: str, ident: Any) -> Operation[List[Any]]:
    """Operation: the entities of ``model`` whose reference column ``attr`` holds ``ident``
    (``model.get_by(attr=ident)``)."""
    from ._ops_read import op_get_by
    return (yield from op_get_by(model, {attr: ident}))


def op_plan_on_delete(entity: Any) -> Operation[Tuple[List[Any], List[Any]]]:
    """Apply the on_delete policies that refer to ``entity`` (breadth first).

    Returns the cascaded entities to delete (in order, ``entity`` excluded) and the
    entities to save afterwards; raises RestrictError before anything is written.
    """
    to_delete = [entity]
    scheduled = {entity._pk}
    to_save: List[Any] = []
    saving = set()
    position = 0
    while position < len(to_delete):
        current = to_delete[position]
        position += 1
        for ref_ns, attr, action in _references_to(type(current)):
            if action == 'no action':
                continue
            referencing = yield from op_referencing(MODELS[ref_ns], attr,
                                                    getattr(current, current._pkey))
            if not referencing:
                continue
            if action == 'restrict':
                raise RestrictError('cannot delete %s: %i %s.%s entit%s refer to it '
                                    "(on_delete='restrict')"
                                    % (current._pk, len(referencing), ref_ns, attr,
                                       'y' if len(referencing) == 1 else 'ies'))
            for ref in referencing:
                if ref._pk in scheduled:
                    continue
                if action == 'cascade':
                    to_delete.append(ref)
                    scheduled.add(ref._pk)
                    continue
                if action == 'set null':
                    setattr(ref, attr, None)
                else:
                    default = ref._columns[attr]._default
                    if default is NULL or default is None:
                        setattr(ref, attr, None)
                    else:
                        setattr(ref, attr, default() if callable(default) else default)
                if ref._pk not in saving:
                    saving.add(ref._pk)
                    to_save.append(ref)
    return to_delete[1:], [ref for ref in to_save if ref._pk not in scheduled]


def _plan_on_delete(entity: Any) -> Tuple[List[Any], List[Any]]:
    """``op_plan_on_delete`` run with the blocking client."""
    from ._io import run
    return run(op_plan_on_delete(entity))
