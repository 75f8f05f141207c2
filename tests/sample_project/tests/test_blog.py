"""The blog's tests: only rom's pytest plugin fixtures, no conftest of their own."""
from __future__ import annotations

import rom
import rom.util

from blog.models import Comment, Post, User, publish


def test_relations_work(rom_db):
    ada = User(email='ada@example.com', name='Ada')
    ada.save()
    post = publish(ada, 'Notes on the engine', 1843)
    Comment(post=post, text='first').save()
    rom.util.session.rollback()
    loaded = Post.get(post.id)
    assert loaded is not None and loaded.author.email == 'ada@example.com'
    assert [c.text for c in loaded.comments] == ['first']
    assert [p.title for p in User.get_by(email='ada@example.com').posts] == [
        'Notes on the engine']


def test_each_test_starts_with_an_empty_database(rom_db):
    assert rom_db.dbsize() == 0
    assert User.get_by(email='ada@example.com') is None
    User(email='grace@example.com').save()
    assert rom_db.dbsize() > 0


def test_the_models_stay_registered(rom_db):
    # the previous tests' data is gone but the application's models (and relations) remain
    assert rom_db.dbsize() == 0
    assert rom.columns.MODELS['Post'] is Post
    author = User(email='x@example.com')
    publish(author, 'hello', 1)
    author.delete()  # cascades through the relation
    assert Post.query.filter(created=(0, 10)).count() == 0


def test_throwaway_models_are_forgotten_after_the_test(rom_db):
    class Scratch(rom.Model):
        n = rom.Integer()
    Scratch(n=1).save()
    assert 'Scratch' in rom.columns.MODELS


def test_scratch_can_be_defined_again(rom_db):
    class Scratch(rom.Model):  # would raise "already exists" if the registry kept it
        n = rom.Integer()
    assert 'Scratch' in rom.columns.MODELS


def test_a_module_first_imported_inside_a_test(rom_db):
    from blog.tags import Tag  # first import: its module-level model is registered now
    post = publish(User(email='t@example.com'), 'tagged', 2)
    Tag(post=post, name='redis').save()
    assert [t.post.title for t in Tag.query.filter(name='redis')] == ['tagged']


def test_its_models_stay_registered_afterwards(rom_db):
    from blog.tags import Tag  # cached module: the class is not declared again
    assert rom.columns.MODELS['Tag'] is Tag
    post = publish(User(email='u@example.com'), 'cascade', 3)
    Tag(post=post, name='x').save()
    post.delete()  # the cascade finds Tag through the registry's references
    assert Tag.query.filter(name='x').count() == 0


def test_session_is_rolled_back_between_tests(rom_db):
    assert not rom.util.session.known and not rom.util.session.wknown


def test_round_trips(rom_db, rom_roundtrips):
    author = User(email='rt@example.com')
    author.save()
    rom.util.session.rollback()
    with rom_roundtrips() as rt:
        assert User.get(author.id) is not None
    assert rt.count == 1 and rt.commands == ['HGETALL']


def test_a_test_without_rom_db_is_untouched():
    # no fixture asked for: nothing is flushed or pointed anywhere by the plugin
    assert 'rom_db' not in globals()
