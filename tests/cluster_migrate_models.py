"""Cluster-mode models for ``python -m rom migrate`` (tests/test_cluster_migrate.py).

Their old, non-cluster layout is declared in the test (same class names, namespaces
``Author`` and ``Post``); here they share the hash tag ``mig``.
"""
import rom


class Author(rom.Model):
    _cluster = 'mig'
    name = rom.Text(unique=True)
    posts = rom.OneToMany('Post', 'author')


class Post(rom.Model):
    _cluster = 'mig'
    author = rom.ManyToOne('Author', on_delete='cascade')
    title = rom.Text(index=True, keygen=rom.FULL_TEXT, prefix=True)
    score = rom.Float(index=True)
    tags = rom.Json(default=list)
    notes = rom.UnsafeColumn()
