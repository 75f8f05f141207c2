"""Typing tests: checked by ``mypy --strict`` (tests/test_typing.py), never imported.

``assert_type`` lines state what a type checker must infer; lines marked
``# type: ignore[code]`` must produce exactly that error (``--warn-unused-ignores`` fails
the check when an expected error disappears).
"""
from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, List, Optional, Union

from typing_extensions import assert_type

import rom


class User(rom.Model):
    email = rom.Text(required=True, unique=True, keygen=rom.IDENTITY_CI)
    name = rom.Text()
    age = rom.Integer(index=True)
    score = rom.Float(required=True, default=0.0)
    balance = rom.Decimal()
    active = rom.Boolean(required=True, default=True)
    created = rom.DateTime(required=True, default=lambda: datetime(2020, 1, 1))
    born = rom.Date()
    wakes = rom.Time()
    token = rom.String()
    prefs = rom.Json()
    safer = rom.SaferDateTime()
    posts: rom.OneToMany[Post] = rom.OneToMany('Post', column='author')


class Post(rom.Model):
    author: rom.ManyToOne[User] = rom.ManyToOne('User', on_delete='cascade', required=True)
    editor: rom.ManyToOne[Optional[User]] = rom.ManyToOne('User', on_delete='set null')
    title = rom.Text(index=True, keygen=rom.FULL_TEXT)
    untyped_ref = rom.ManyToOne('User', on_delete='no action')


class Explicit(rom.Model):
    key = rom.PrimaryKey(index=True)


def columns(user: User, post: Post) -> None:
    assert_type(user.email, str)
    assert_type(user.name, Optional[str])
    assert_type(user.age, Optional[int])
    assert_type(user.score, float)
    assert_type(user.balance, Optional[Decimal])
    assert_type(user.active, bool)
    assert_type(user.created, datetime)
    assert_type(user.born, Optional[date])
    assert_type(user.wakes, Optional[time])
    assert_type(user.token, Optional[bytes])
    assert_type(user.prefs, Any)
    assert_type(user.safer, Optional[datetime])
    assert_type(user.id, int)
    assert_type(Post(title='x').id, int)
    assert_type(Explicit().key, int)
    assert_type(post.author, User)
    assert_type(post.editor, Optional[User])
    assert_type(post.untyped_ref, Any)
    assert_type(user.posts, List[Post])
    # class access gives the column itself
    assert_type(User.email, rom.Text[str])
    assert_type(User.age, rom.Integer[Optional[int]])


def assignments(user: User) -> None:
    user.name = 'ok'
    user.name = None
    user.age = 3
    user.score = 1  # an int is a float for type checkers (and for Float columns)
    user.email = 5  # type: ignore[assignment]
    user.email = None  # type: ignore[assignment]
    user.age = 'forty'  # type: ignore[assignment]
    user.token = 'text'  # type: ignore[assignment]


def reads() -> None:
    assert_type(User.get(1), Optional[User])
    assert_type(User.get('1'), Optional[User])
    assert_type(User.get([1, 2]), List[User])
    assert_type(User.get((1, 2)), List[User])
    assert_type(User.get_by(age=[1, 2]), List[User])
    assert_type(User.get_by(age=(1, 20)), List[User])
    assert_type(User.get_by(email="a@b.c"), Union[User, List[User], None])
    assert_type(User.query, rom.Query[User])
    query = User.query.filter(age=(18, None)).order_by('-age')
    assert_type(query, rom.Query[User])
    assert_type(query.all(), List[User])
    assert_type(query.execute(), List[User])
    assert_type(query.first(), Optional[User])
    assert_type(query.limit(0, 10).startswith(name='a').all(), List[User])
    assert_type(query.select('email').all(), List[Any])
    for user in query:
        assert_type(user, User)
    assert_type(query.exists(), bool)
    assert_type(query[10:20], rom.Query[User])
    assert_type(query[3], User)
    page = query.page(20)
    assert_type(page.items, List[User])
    assert_type(page.next, Optional[str])
    for item in page:
        assert_type(item, User)
    assert_type(User(email='x').copy(), User)
    assert_type(User(email='x').update(name='y'), User)


async def async_reads() -> None:
    assert_type(await User.aget(1), Optional[User])
    assert_type(await User.aget([1, 2]), List[User])
    assert_type(await User.aget_by(age=(1, 20)), List[User])
    assert_type(await User.aget_by(email="a@b.c"), Union[User, List[User], None])
    query = User.query.filter(age=(18, None)).order_by('-age')
    assert_type(await query.aall(), List[User])
    assert_type(await query.aexecute(), List[User])
    assert_type(await query.afirst(), Optional[User])
    assert_type(await query.acount(), int)
    assert_type(await query.aexists(), bool)
    assert_type(await query.acached_result(5), str)
    assert_type(await query.aselect('email'), List[Any])
    assert_type(query.prefetch('email'), rom.Query[User])
    async for user in query:
        assert_type(user, User)
    async for user in query.aiter_result(pagesize=10):
        assert_type(user, User)
    page = await query.apage(20)
    assert_type(page.items, List[User])
    user = User(email='x')
    await user.arefresh()
    assert_type(await user.aload('email'), Any)


def columns_refuse_unknown_options() -> None:
    rom.Integer(indx=True)  # type: ignore[call-overload]


class Upper(rom.Column):  # a custom column type: bare generic names stay valid (--strict)
    _allowed = str


class WithCustom(rom.Model):
    shout = Upper()


def bare_annotations(query: rom.Query, page: rom.query.Page, column: rom.Column,
                     text: rom.Text, entity: WithCustom) -> None:
    assert_type(entity.shout, Any)
    assert_type(query.all(), List[Any])
