"""Synthetic dealer-group data: realistic, deterministic DMS-style exports for demos and tests.

``catalog`` holds the reference data (a fictional brand, its car series, names, cities);
``generator`` turns a seed into a directory of import files plus a ``manifest.json``.
"""
