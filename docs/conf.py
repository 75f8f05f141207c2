"""Sphinx configuration for the rom documentation.

Build with warnings as errors: ``python -m sphinx -W --keep-going -b html docs docs/_build/html``
(``python3 tools/run.py docs``). The ``>>>`` examples of every page are run by
``tests/test_docs.py``.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.abspath('..'))

project = 'rom'
author = 'rom contributors'
copyright = 'rom contributors; LGPL-2.1-or-later'
release = '1.1.2'
version = '1.1'

extensions = [
    'sphinx.ext.autodoc',
    'sphinx.ext.napoleon',   # the Args:/Raises:/Returns: sections of the docstrings
    'sphinx.ext.viewcode',
]

# API reference: the docstrings, in source order, with annotations in the signatures.
autodoc_member_order = 'bysource'
autodoc_typehints = 'signature'
autodoc_preserve_defaults = True
add_module_names = False
napoleon_numpy_docstring = False

exclude_patterns = ['_build', 'Thumbs.db', '.DS_Store']
html_theme = 'alabaster'
html_theme_options = {
    'description': 'Redis object mapper for Python',
    'fixed_sidebar': True,
}
