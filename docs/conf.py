"""Sphinx configuration for the rom documentation."""
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
    'sphinx.ext.intersphinx',
    'sphinx.ext.viewcode',
]
autodoc_member_order = 'bysource'
intersphinx_mapping: dict = {}
exclude_patterns = ['_build']
html_theme = 'alabaster'
