"""rom._cross_slot: the order of per-slot calls, on entities built from stored rows (no
writes; the slot function is given, so any client will do)."""
from __future__ import annotations

from typing import Any, Dict, List

import rom
from rom._cross_slot import delete_steps, references, save_order, spans_slots


def _slot(entity: Any) -> Any:
    return type(entity)._cluster_tag


def _row(model: Any, **values: Any) -> Any:
    data: Dict[str, str] = {k: str(v) for k, v in values.items()}
    return model._from_stored(data, False, track=False)


def _names(steps: List[Any]) -> List[Any]:
    return [(kind, ['%s%s' % (type(e).__name__, e.id) for e in group]) for kind, group in steps]


def test_children_before_parents_and_merged_slots() -> None:
    class P(rom.Model):
        _cluster = 'a'

    class C(rom.Model):
        _cluster = 'b'
        p = rom.ManyToOne('P', on_delete='cascade')

    class G(rom.Model):  # grandchild in the parent's slot
        _cluster = 'a'
        c = rom.ManyToOne('C', on_delete='cascade')

    class S(rom.Model):  # set null, in the parent's slot
        _cluster = 'a'
        p = rom.ManyToOne('P', on_delete='set null')

    p = _row(P, id=1)
    c1, c2 = _row(C, id=1, p=1), _row(C, id=2, p=1)
    g = _row(G, id=1, c=2)
    s = _row(S, id=1, p=1)
    assert list(references(g)) == ['{b}:C:2']
    assert _names(delete_steps(p, [c1, c2, g], [s], slot=_slot)) == [
        ('save', ['S1']), ('delete', ['G1']), ('delete', ['C1', 'C2']), ('delete', ['P1'])]
    # without the grandchild, the children's slot goes first and the parent's in one call
    assert _names(delete_steps(p, [c1, c2], [], slot=_slot)) == [
        ('delete', ['C1', 'C2']), ('delete', ['P1'])]
    # an expiring root goes first, alone
    assert _names(delete_steps(p, [c1, c2], [s], root_first=True, slot=_slot)) == [
        ('delete', ['P1']), ('save', ['S1']), ('delete', ['C1', 'C2'])]
    assert spans_slots([p, c1]) and not spans_slots([p, g])


def test_reference_cycles() -> None:
    class X(rom.Model):
        _cluster = 'a'
        y = rom.ManyToOne('Y', on_delete='cascade')
        x = rom.ManyToOne('X', on_delete='cascade')

    class Y(rom.Model):
        _cluster = 'b'
        x = rom.ManyToOne('X', on_delete='cascade')

    # a cycle inside one slot is one call; a self reference is no dependency
    x1, x2 = _row(X, id=1, x=2), _row(X, id=2, x=1)
    assert _names(delete_steps(x1, [x2], [], slot=_slot)) == [('delete', ['X1', 'X2'])]
    # across slots no order is safe: every row is still deleted, once
    x3, y1 = _row(X, id=3, y=1, x=3), _row(Y, id=1, x=3)
    steps = delete_steps(x3, [y1], [], slot=_slot)
    assert sorted(n for _, group in _names(steps) for n in group) == ['X3', 'Y1']


def test_save_order_groups_per_slot_with_new_targets_first(conn: Any) -> None:
    class A(rom.Model):
        _cluster = 'a'

    class B(rom.Model):
        _cluster = 'b'
        a = rom.ManyToOne('A', on_delete='no action')

    b1, a1, b2 = B(), A(), B()
    b1.a = a1  # assigned: a1 stays new until saved
    assert [type(e).__name__ for e in save_order([b1, a1, b2], slot=_slot)] == ['A', 'B', 'B']
    old = _row(A, id=9)
    b1.a = old  # no new target: groups in order of first appearance
    assert [type(e).__name__ for e in save_order([b1, a1, b2], slot=_slot)] == ['B', 'B', 'A']

    class Plain(rom.Model):
        x = rom.Integer()

    plain = [Plain(), B(), Plain()]
    assert save_order(plain) is plain  # not all cluster models: as given
