"""Named prefix states: `state.py` (a prompt prefilled once and kept under a name, for one
tenant, and its budgets), `store.py` (where states are kept), `keeper.py` (keeps live states
resident until their TTL ends).
"""
