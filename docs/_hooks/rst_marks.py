"""MkDocs hook: the docstrings' reStructuredText marks shown as what they mean.

The docstrings are read by Python's ``help()`` as much as by this site, so they
keep their Sphinx roles (``:func:`name```), which Markdown would print before
the name, and the ``::`` that ends a paragraph before a literal block, which
Markdown shows as a code block already.
"""

import re

ROLE = re.compile(r":(?:func|class|meth|mod|attr|exc|data|obj):(?=<code>)")
LITERAL_BLOCK = re.compile(r"::(?=</p>)")


def on_page_content(html, page, config, files):
    return LITERAL_BLOCK.sub(":", ROLE.sub("", html))
