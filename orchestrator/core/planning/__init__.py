"""Planning: which token prefixes to prefill while the user is still typing.

`prompt.py` renders a session's prompt with the model's chat template, to token ids;
`stable.py` finds where typed text stops changing under the tokenizer; `rhythm.py` tells a
typist's pause from the next key; `planner.py` decides, from those, what to warm. Pure:
inputs in, decisions out, no network.
"""
