"""The blog's models, defined once at import time like in any application."""
from __future__ import annotations

from typing import Optional

import rom


class User(rom.Model):
    email = rom.Text(required=True, unique=True, keygen=rom.IDENTITY_CI)
    name = rom.Text(index=True, keygen=rom.FULL_TEXT)
    posts: rom.OneToMany[Post] = rom.OneToMany('Post')


class Post(rom.Model):
    author: rom.ManyToOne[User] = rom.ManyToOne('User', on_delete='cascade', required=True)
    title = rom.Text(required=True, index=True, keygen=rom.FULL_TEXT)
    created = rom.Integer(required=True, index=True)
    comments: rom.OneToMany[Comment] = rom.OneToMany('Comment')


class Comment(rom.Model):
    post: rom.ManyToOne[Optional[Post]] = rom.ManyToOne('Post', on_delete='cascade')
    text = rom.Text(required=True)


def publish(author: User, title: str, created: int) -> Post:
    post = Post(author=author, title=title, created=created)
    post.save()
    return post
