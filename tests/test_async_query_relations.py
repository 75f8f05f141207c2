"""Relations in async code: ``aload``, ``Query.prefetch`` and ``MissingLoadError``."""
import threading

import pytest

import rom
from rom.exceptions import MissingLoadError, ORMError, QueryError
from rom.util import session

from test_async_query import _count_steps


def _blog():
    class Author(rom.Model):
        name = rom.Text()
        posts = rom.OneToMany('Post')

    class Post(rom.Model):
        author = rom.ManyToOne('Author', on_delete='cascade')
        n = rom.Integer(index=True)
        title = rom.Text()

    ann, bob = Author(name='ann'), Author(name='bob')
    ann.save()
    bob.save()
    for i in range(6):
        Post(title='t%d' % i, n=i, author=ann if i % 2 else bob).save()
    session.commit()
    session.rollback()
    return Author, Post


async def test_unloaded_relations_raise_a_typed_error(conn):
    Author, Post = _blog()
    post = await Post.aget(1)
    with pytest.raises(MissingLoadError) as info:
        post.author
    assert isinstance(info.value, ORMError)
    assert "await entity.aload('author')" in str(info.value) and 'prefetch' in str(info.value)
    author = await Author.aget(2)
    with pytest.raises(MissingLoadError, match="aload\\('posts'\\)"):
        author.posts
    session.rollback()
    first = (await Post.query.filter(n=(0, 0)).aall())[0]
    with pytest.raises(MissingLoadError):
        first.author


async def test_aload_many_to_one_and_one_to_many(conn, monkeypatch):
    Author, Post = _blog()
    post = await Post.aget(2)
    author = await post.aload('author')
    assert author.name == 'ann' and author._rom_async
    counts = _count_steps(monkeypatch)
    assert post.author is author                      # loaded: no I/O
    posts = await author.aload('posts')
    assert sorted(p.n for p in posts) == [1, 3, 5] and all(p._rom_async for p in posts)
    assert sorted(p.n for p in author.posts) == [1, 3, 5]
    assert counts['async'] == 1 and counts['sync'] == 0
    assert await (await Post.aget(1)).aload('author') is (await Author.aget(2))
    with pytest.raises(QueryError):
        await post.aload('title')


async def test_targets_the_session_holds_need_no_load(conn):
    Author, Post = _blog()
    ann = await Author.aget(1)
    post = await Post.aget(2)
    assert post.author is ann                          # held by the session: no I/O needed


async def test_sync_sourced_entities_and_other_threads_keep_lazy_loads(conn):
    Author, Post = _blog()
    post = Post.get(2)                                 # blocking API: today's lazy loads
    assert post.author.name == 'ann'
    assert sorted(p.n for p in Author.get(2).posts) == [0, 2, 4]
    loaded = await Post.aget(4)
    seen = []
    thread = threading.Thread(target=lambda: seen.append(loaded.author.name))
    thread.start()
    thread.join()
    assert seen == ['ann']                             # no event loop in that thread


async def test_prefetch_loads_relations_of_a_page_in_one_round_trip(conn, monkeypatch):
    Author, Post = _blog()
    counts = _count_steps(monkeypatch)
    posts = await Post.query.order_by('n').prefetch('author').aall()
    assert counts['async'] == 3                        # ids, rows, authors
    assert [p.author.name for p in posts] == ['bob', 'ann'] * 3
    assert all(p.author._rom_async for p in posts)
    authors = await Author.query.prefetch('posts').aall()
    assert counts['async'] == 6                        # ids, rows, every author's posts
    assert {a.name: sorted(p.n for p in a.posts) for a in authors} == {
        'ann': [1, 3, 5], 'bob': [0, 2, 4]}
    first = await Post.query.order_by('-n').prefetch('author').afirst()
    assert first.author.name == 'ann'
    got = [p.author.name async for p in Post.query.order_by('n').limit(0, 2).prefetch('author')]
    assert got == ['bob', 'ann']


async def test_prefetch_in_sync_code(conn, roundtrips):
    Author, Post = _blog()
    posts = Post.query.filter(n=(0, 5)).prefetch('author').all()
    with roundtrips(conn) as rt:
        assert sorted(p.author.name for p in posts) == ['ann'] * 3 + ['bob'] * 3
    assert rt.count == 0
    authors = Author.query.prefetch('posts').all()
    with roundtrips(conn) as rt:
        assert sorted(len(a.posts) for a in authors) == [3, 3]
    assert rt.count == 0


async def test_prefetch_validation(conn):
    Author, Post = _blog()
    with pytest.raises(QueryError):
        Post.query.prefetch('title')
    with pytest.raises(QueryError):
        Post.query.prefetch('nope')
    with pytest.raises(QueryError):
        Post.query.select('title').prefetch('author')
    with pytest.raises(QueryError):
        Post.query.prefetch('author').select('title')
    q = Post.query.prefetch('author', 'author')
    assert q._prefetch == ('author',) and q.filter(n=1)._prefetch == ('author',)
    assert isinstance(q, rom.Query) and Post.query._prefetch == ()


async def test_saved_by_asave_and_arefresh(conn):
    Author, Post = _blog()
    carl = Author(name='carl')
    await carl.asave()
    with pytest.raises(MissingLoadError):
        carl.posts
    assert await carl.aload('posts') == []
    post = await Post.aget(1)
    await post.aload('author')
    await post.arefresh()
    session.rollback()
    with pytest.raises(MissingLoadError):
        post.author                                    # reread: the reference is unloaded


async def test_async_reads_never_use_the_blocking_client(conn, monkeypatch):
    Author, Post = _blog()

    def refuse(*args, **kwargs):
        raise AssertionError('the blocking client was asked for in async code')
    monkeypatch.setattr(rom.util, '_connect', refuse)
    monkeypatch.setattr(rom.util, 'get_connection', refuse)
    post = await Post.aget(2)
    assert (await post.aload('author')).name == 'ann'
    assert len(await Post.aget([1, 2, 3])) == 3
    assert len(await Post.aget_by(n=(0, 3))) == 4
    posts = await Post.query.filter(n=(0, 5)).order_by('-n').prefetch('author').aall()
    assert [p.author.name for p in posts[:2]] == ['ann', 'bob']
    authors = await Author.query.prefetch('posts').aall()
    assert sorted(len(a.posts) for a in authors) == [3, 3]
    assert await Post.query.filter(n=(1, 4)).acount() == 4
    assert [p.n async for p in Post.query.order_by('n').aiter_result(pagesize=2)] == list(
        range(6))
    await post.arefresh()
    # a reference given as an id in a coroutine is not looked up then (that would block)
    session.rollback()
    new = Post(title='new', n=9, author=1)
    with pytest.raises(MissingLoadError):
        new.author
    new.author = 2
    await new.asave()
    assert (await new.aload('author')).name == 'bob'
    orphan = Post(title='x', n=10, author=99)         # an id naming no entity: None
    await orphan.asave()
    assert await orphan.aload('author') is None
    with pytest.raises(rom.exceptions.InvalidColumnValue):
        Post(title='bad', n=11, author='junk')
    with pytest.raises(rom.exceptions.InvalidOperation):
        await Post(title='unsaved', n=12).arefresh()    # (its pending id is not taken)


def test_one_to_many_finds_a_back_reference_naming_the_class_or_the_namespace(conn):
    class NsAuthor(rom.Model):
        _namespace = 'authors'
        posts = rom.OneToMany('NsPost')

    class NsPost(rom.Model):
        author = rom.ManyToOne('NsAuthor', on_delete='cascade')   # the class name

    author = NsAuthor()
    author.save()
    NsPost(author=author).save()
    session.commit()
    session.rollback()
    assert [p.id for p in NsAuthor.get(author.id).posts] == [1]
