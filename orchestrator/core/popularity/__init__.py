"""Prefix popularity: `popularity.py` records what each tenant asked (in memory or a store)
and `index.py` ranks the shared prefixes by decayed use, for hints and re-warms.
"""
