"""Relations across hash slots on a real local cluster (3 masters): rom._cross_slot.

Models with different hash tags live in different slots (here on different masters), so an
operation over them is one atomic script call per slot. These tests check the calls and
their order, and inject a crash before each call (the process stops sending: the
connection raises before the command leaves) to show that every intermediate state reads
correctly and that ``audit_model`` / ``repair_model`` (``python -m rom check --fix``)
find and repair what only a race can leave. Marked ``cluster``.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, List, Optional

import pytest

import rom
import rom.util
from rom import util
from rom._audit import audit_model
from rom._cross_slot import delete_steps, save_order
from rom._repair import repair_model
from rom._scripts import lua
from rom.exceptions import RestrictError
from rom.testing import LocalCluster, instrument

pytestmark = pytest.mark.cluster


class Crash(BaseException):
    """The process stops here (not an ``Exception``: nothing catches and retries it)."""


class WriteTripwire:
    """Counts the calls of rom's write script sent by an instrumented client; runs
    ``action`` just before the ``at``-th one leaves (``rom.testing.instrument`` hook)."""

    def __init__(self) -> None:
        self.calls = 0
        self.at = 0
        self.action: Optional[Callable[[], None]] = None
        self.marks = (lua('write').sha.encode(), lua('write').script)

    def record(self, packed: Any) -> None:
        chunks = [packed] if isinstance(packed, (bytes, bytearray, memoryview, str)) else packed
        data = b''.join(c.encode() if isinstance(c, str) else bytes(c) for c in chunks)
        if not (data.startswith(b'*') and any(mark in data for mark in self.marks)):
            return
        self.calls += 1
        if self.calls == self.at and self.action is not None:
            action, self.action = self.action, None
            action()

    def arm(self, at: int, action: Optional[Callable[[], None]] = None) -> None:
        self.calls, self.at = 0, at
        self.action = action or self.crash

    @staticmethod
    def crash() -> None:
        raise Crash()


@pytest.fixture
def wire(cluster: LocalCluster) -> Iterator[WriteTripwire]:
    """rom on a fresh cluster client whose write-script calls a WriteTripwire sees."""
    cluster.flushall()
    client = cluster.client()
    tripwire = WriteTripwire()
    client._rom_counter = tripwire  # instrument() shares this counter with every node
    instrument(client)
    rom.util.CONNECTION = client
    util.session.rollback()
    yield tripwire
    util.session.rollback()
    client.close()


def _models() -> Any:
    """Author {a} <- Book {b} (cascade) <- Review {c} (cascade); Fan {c} -> Author (set
    null); Loan {c} -> Book (restrict). Three tags, three slots, on three masters."""
    class Author(rom.Model):
        _cluster = 'a'
        name = rom.Text(index=True, keygen=rom.IDENTITY)

    class Book(rom.Model):
        _cluster = 'b'
        author = rom.ManyToOne('Author', on_delete='cascade')
        title = rom.Text(index=True, keygen=rom.IDENTITY)

    class Review(rom.Model):
        _cluster = 'c'
        book = rom.ManyToOne('Book', on_delete='cascade')
        stars = rom.Integer(index=True)

    class Fan(rom.Model):
        _cluster = 'c'
        author = rom.ManyToOne('Author', on_delete='set null')
        nick = rom.Text(unique=True)

    class Loan(rom.Model):
        _cluster = 'c'
        book = rom.ManyToOne('Book', on_delete='restrict')

    return Author, Book, Review, Fan, Loan


def _library(models: Any) -> Any:
    Author, Book, Review, Fan, _ = models
    author = Author(name='ann')
    author.save()
    for i in range(3):
        book = Book(author=author, title='t%d' % i)
        book.save()
        Review(book=book, stars=i).save()
    Fan(author=author, nick='f1').save()
    Fan(author=author, nick='f2').save()
    util.session.rollback()
    return author.id


def _n(model: Any) -> int:
    """How many rows ``model`` has (an unfiltered count is only the id counter)."""
    return len(model.query.all())


def _assert_reads_correctly(models: Any) -> None:
    """No row names a missing row, every index agrees with the rows (zero audit findings)."""
    util.session.rollback()
    for model in models:
        report = audit_model(model, block_size=10)
        assert report.ok, str(report)
    Author, Book, Review, Fan, Loan = models
    for book in Book.query.all():
        assert book.author is not None
        assert Book.get_by(author=book.author.id)
    for review in Review.query.all():
        assert review.book is not None
    for fan in Fan.query.all():
        assert fan.author is None or Author.get(fan.author.id) is not None
    util.session.rollback()


def test_models_with_different_tags_are_on_different_masters(wire: WriteTripwire) -> None:
    Author, Book, Review, _, _ = _models()
    client = rom.util.CONNECTION
    nodes = {client.get_node_from_key(m._namespace + ':x').name
             for m in (Author, Book, Review)}
    assert len(nodes) == 3


def test_cascade_and_set_null_across_slots_in_safe_order(wire: WriteTripwire) -> None:
    models = _models()
    Author, Book, Review, Fan, _ = models
    author = Author.get(_library(models))
    steps = delete_steps(author, *_plan(author))
    assert [(kind, sorted({type(e).__name__ for e in group})) for kind, group in steps] == [
        ('save', ['Fan']), ('delete', ['Review']), ('delete', ['Book']),
        ('delete', ['Author'])]
    wire.arm(0)
    author.delete()
    assert wire.calls == 4  # one atomic call per slot and kind, nothing more
    util.session.rollback()
    assert _n(Author) == _n(Book) == _n(Review) == 0
    assert sorted((f.nick, f.author) for f in Fan.query.all()) == [('f1', None), ('f2', None)]
    _assert_reads_correctly(models)


def _plan(author: Any) -> Any:
    from rom._on_delete import _plan_on_delete
    return _plan_on_delete(author)


@pytest.mark.parametrize('crash_at', [1, 2, 3, 4])
def test_crash_between_slot_calls_of_a_delete(wire: WriteTripwire, crash_at: int) -> None:
    models = _models()
    Author, Book, Review, Fan, _ = models
    author_id = _library(models)
    wire.arm(crash_at)
    with pytest.raises(Crash):
        Author.get(author_id).delete()
    # calls before the crash are written, the rest are not: it reads correctly
    _assert_reads_correctly(models)
    assert Author.get(author_id) is not None
    expected_books = 3 if crash_at <= 3 else 0
    assert _n(Book) == expected_books
    assert _n(Review) == (3 if crash_at <= 2 else 0)
    assert Fan.query.filter(author=author_id).count() == (2 if crash_at == 1 else 0)
    # running the delete again finishes the job
    util.session.rollback()
    wire.arm(0)
    Author.get(author_id).delete()
    util.session.rollback()
    assert _n(Author) == _n(Book) == _n(Review) == 0
    assert _n(Fan) == 2
    _assert_reads_correctly(models)


@pytest.mark.parametrize('kill_at', [1, 2, 3, 4])
def test_connections_killed_between_slot_calls(wire: WriteTripwire, cluster: LocalCluster,
                                               kill_at: int) -> None:
    """Every client connection of every master is killed (CLIENT KILL) just before one of
    the calls: the cluster client reconnects and sends it again, the delete completes."""
    models = _models()
    Author, Book, Review, Fan, _ = models
    author_id = _library(models)
    killed = []

    def kill_all() -> None:
        for node in cluster.master_nodes():
            admin = node.client()
            killed.append(admin.client_kill_filter(_type='normal', skipme=True))
            admin.close()

    wire.arm(kill_at, kill_all)
    Author.get(author_id).delete()
    assert sum(killed) >= 1
    util.session.rollback()
    assert _n(Author) == _n(Book) == _n(Review) == 0 and _n(Fan) == 2
    _assert_reads_correctly(models)


def test_deep_cascade_back_into_the_first_slot(wire: WriteTripwire) -> None:
    """Author {a} <- Book {b} <- Blurb {a}: the blurbs go before the books, the author
    last; the two {a} groups cannot be merged."""
    models = _models()
    Author, Book = models[:2]

    class Blurb(rom.Model):
        _cluster = 'a'
        book = rom.ManyToOne('Book', on_delete='cascade')

    author = Author(name='x')
    author.save()
    book = Book(author=author, title='b')
    book.save()
    Blurb(book=book).save()
    util.session.rollback()
    author = Author.get(author.id)
    steps = delete_steps(author, *_plan(author))
    assert [[type(e).__name__ for e in group] for _, group in steps] == [
        ['Blurb'], ['Book'], ['Author']]
    for left in (['Book', 'Author'], ['Author']):  # crash before the second call, twice
        wire.arm(2)
        with pytest.raises(Crash):
            Author.get(author.id).delete()
        _assert_reads_correctly(models)
        assert audit_model(Blurb).ok
        assert [name for name, model in (('Book', Book), ('Author', Author))
                if _n(model)] == left
        util.session.rollback()
    wire.arm(0)
    Author.get(author.id).delete()
    assert _n(Blurb) == _n(Book) == _n(Author) == 0


def test_restrict_across_slots_and_its_race(wire: WriteTripwire) -> None:
    models = _models()
    Author, Book, Review, Fan, Loan = models
    author = Author(name='r')
    author.save()
    book = Book(author=author, title='lent')
    book.save()
    loan = Loan(book=book)
    loan.save()
    wire.arm(0)
    with pytest.raises(RestrictError):
        Book.get(book.id).delete()
    assert Book.get(book.id) is not None and wire.calls == 0
    loan.delete()
    util.session.rollback()

    # the race: the restrict check finds no loan, another client lends the book before
    # the delete's own call runs (the check and the delete are separate calls)
    def lend() -> None:
        saved = Loan(book=Book.get(book.id))
        saved.save()

    wire.arm(1, lend)
    Book.get(book.id).delete()
    util.session.rollback()
    assert Book.get(book.id) is None
    report = audit_model(Loan)
    assert report.counts['dangling-reference'] == 1
    summary = repair_model(Loan, report)
    assert any("'restrict'" in line for line in summary.lines())  # left for a person
    assert Loan.query.all()[0].book is None  # reads as no book


def test_check_and_fix_apply_on_delete_to_dangling_references(wire: WriteTripwire) -> None:
    """Rows left pointing at a deleted row (e.g. an expiring row deleted first, then a crash)
    are reported by the audit and repaired by each column's on_delete."""
    models = _models()
    Author, Book, Review, Fan, _ = models
    author_id = _library(models)
    Author.get(author_id).delete(skip_on_delete_i_really_mean_it=rom.SKIP_ON_DELETE)
    util.session.rollback()
    # (the index entries of the dangling references are reported as stale as well)
    assert audit_model(Book).counts['dangling-reference'] == 3
    assert audit_model(Fan).counts['dangling-reference'] == 2
    for model in (Book, Fan):
        repair_model(model, audit_model(model))
    util.session.rollback()
    assert _n(Book) == _n(Review) == 0  # cascaded to the reviews too
    assert _n(Fan) == 2
    _assert_reads_correctly(models)


def test_saving_a_new_target_in_another_slot_writes_it_first(wire: WriteTripwire) -> None:
    models = _models()
    Author, Book = models[:2]
    wire.arm(2)  # crash before the book's own call: the author is already written
    with pytest.raises(Crash):
        Book(author=Author(name='new'), title='b').save()
    util.session.rollback()
    assert [a.name for a in Author.query.all()] == ['new'] and _n(Book) == 0
    _assert_reads_correctly(models)
    wire.arm(0)
    Book(author=Author(name='two'), title='c').save()
    assert wire.calls == 2
    util.session.rollback()
    assert Book.get_by(title='c')[0].author.name == 'two'


def _commit_batch(models: Any) -> List[Any]:
    """New rows of three slots, referrers before their new targets, slots interleaved.

    (A new target given to the constructor is saved right away, as in rom 1.1.2; assigned
    afterwards, it is saved with the commit.)"""
    Author, Book, Review, Fan, _ = models
    made: List[Any] = []
    for i in range(3):
        book, fan = Book(title='b%d' % i), Fan(nick='n%d' % i)
        review = Review(stars=i)
        author = Author(name='a%d' % i)
        book.author = fan.author = author
        review.book = book
        made += [book, fan, author, review]
    assert not any(rom.util.CONNECTION.exists(e._pk) for e in made)  # nothing written yet
    return made


def test_commit_spanning_slots_is_one_call_per_slot_targets_first(
        wire: WriteTripwire) -> None:
    models = _models()
    Author, Book, Review, Fan, _ = models
    made = _commit_batch(models)
    ordered = save_order(made)
    assert [type(e).__name__ for e in ordered] == (
        ['Author'] * 3 + ['Book'] * 3 + ['Fan', 'Review'] * 3)
    wire.arm(0)
    util.session.commit()
    assert wire.calls == 3
    util.session.rollback()
    assert (_n(Author), _n(Book), _n(Fan),
            _n(Review)) == (3, 3, 3, 3)
    _assert_reads_correctly(models)


@pytest.mark.parametrize('crash_at', [1, 2, 3])
def test_crash_between_slot_calls_of_a_commit(wire: WriteTripwire, crash_at: int) -> None:
    models = _models()
    Author, Book, Review, Fan, _ = models
    _commit_batch(models)
    wire.arm(crash_at)
    with pytest.raises(Crash):
        util.session.commit()
    _assert_reads_correctly(models)
    assert _n(Author) == (0 if crash_at == 1 else 3)
    assert _n(Book) == (3 if crash_at == 3 else 0)
    assert _n(Review) == _n(Fan) == 0


def test_expired_row_goes_first_and_a_crash_after_it_is_repaired(
        wire: WriteTripwire) -> None:
    """An expiring row is deleted first (its delete checks that it is due, so a renewed row
    never loses its children); a crash after that call leaves children pointing at it,
    which the audit reports and the repair cascades."""
    class Token(rom.Model):
        _cluster = 'a'
        _ttl = 3600
        value = rom.Text(unique=True)

    class Grant(rom.Model):
        _cluster = 'b'
        token = rom.ManyToOne('Token', on_delete='cascade')

    def token_with_grants() -> Any:
        token = Token(value='v')
        token.save()
        for _ in range(2):
            Grant(token=token).save()
        util.session.rollback()
        return Token.get(token.id)

    token = token_with_grants()
    steps = delete_steps(token, list(Grant.get_by(token=token.id)), [], root_first=True)
    assert [[type(e).__name__ for e in group] for _, group in steps] == [
        ['Token'], ['Grant', 'Grant']]
    token.expire_at(0)
    wire.arm(0)
    token.save()  # due at once: the write's expiry cleanup removes it, on_delete applied
    assert wire.calls == 3  # the save, the token's delete, the grants' delete
    util.session.rollback()
    assert Token.get(token.id) is None and _n(Grant) == 0

    token = token_with_grants()
    token.expire_at(0)
    wire.arm(3)  # crash after the token's delete, before its grants'
    with pytest.raises(Crash):
        token.save()
    util.session.rollback()
    assert Token.get(token.id) is None and _n(Grant) == 2
    report = audit_model(Grant)
    assert report.counts['dangling-reference'] == 2
    repair_model(Grant, report)
    util.session.rollback()
    assert _n(Grant) == 0 and audit_model(Grant).ok and audit_model(Token).ok
