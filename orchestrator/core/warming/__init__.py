"""Sending warm-ups: the planner's decisions turned into `max_tokens=1` requests.

`warmer.py` is a session's warm-ups (one at a time, in pieces); `modes.py` what a session
warms; `dispatch.py` the one way any warm-up reaches vLLM, through `gate.py` (rate bounds) and
`scheduler.py` (how much warm-up work the engine holds, always giving way to finals);
`scorecard.py` what the warm-ups did for the final request.
"""
