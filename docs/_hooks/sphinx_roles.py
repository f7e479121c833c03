"""MkDocs hook: the docstrings' Sphinx roles (``:func:`name```) shown as the code they mark.

The docstrings are read by Python's ``help()`` as much as by this site, so they
keep their roles; Markdown would print ``:func:`` before the name.
"""

import re

ROLE = re.compile(r":(?:func|class|meth|mod|attr|exc|data|obj):(?=<code>)")


def on_page_content(html, page, config, files):
    return ROLE.sub("", html)
