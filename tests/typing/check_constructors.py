"""Typing tests for the optional mypy plugin ``rom.mypy_plugin`` (constructor keywords).

Checked by tests/test_typing.py with ``plugins = rom.mypy_plugin``, ``--strict`` and
``--warn-unused-ignores``: every ``# type: ignore[code]`` line must produce that error.
"""
from __future__ import annotations

from typing import Any, Optional

from typing_extensions import assert_type

import rom


class User(rom.Model):
    email = rom.Text(required=True, unique=True, keygen=rom.IDENTITY_CI)
    age = rom.Integer()
    posts: rom.OneToMany[Post] = rom.OneToMany('Post', column='author')
    email_index = rom.IndexOnly('email', keygen=rom.IDENTITY)


class Post(rom.Model):
    author: rom.ManyToOne[User] = rom.ManyToOne('User', on_delete='cascade')
    editor: rom.ManyToOne[Optional[User]] = rom.ManyToOne('User', on_delete='set null')
    untyped = rom.ManyToOne('User', on_delete='no action')
    body = rom.Text()


class Admin(User):
    level = rom.Integer(required=True)


class OwnInit(rom.Model):
    x = rom.Integer()

    def __init__(self, label: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.label = label


def _anything() -> Any:
    return rom.Integer()


class Dynamic(rom.Model):
    LIMIT = 5
    made = _anything()


def constructors() -> None:
    user = User(email='a@b.c', age=3)
    assert_type(user, User)
    User(email='a@b.c', age=None)
    User(email='a@b.c', _extra_ok=True)
    User(emial='a@b.c')  # type: ignore[call-arg]
    User(email=3)  # type: ignore[arg-type]
    User(email='a@b.c', age='3')  # type: ignore[arg-type]
    User(email='a@b.c', id=3)  # type: ignore[call-arg]
    User(email='a@b.c', posts=[])  # type: ignore[call-arg]
    User(email='a@b.c', email_index='x')  # type: ignore[call-arg]
    Post(author=user, editor=None, body='text')
    Post(author=1)  # a reference also takes an id
    Post(author='1')  # type: ignore[arg-type]
    Post(untyped='anything')
    Admin(email='a@b.c', level=2)
    Admin(email='a@b.c', levle=2)  # type: ignore[call-arg]
    OwnInit('label', anything=1)
    Dynamic(made=1)
    Dynamic(LIMIT=3)  # type: ignore[call-arg]
