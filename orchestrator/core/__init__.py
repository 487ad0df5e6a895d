"""The session core: from a typed keystroke to a warm-up request, and a submit to its answer,
without the web (nothing here imports FastAPI or Starlette; `web/` adapts it to HTTP and
WebSockets).

At this level, the session and what it shares: `session.py` (one typing session),
`started.py` (what its `start` frame fixed), `services.py` (what every session shares),
`registry.py` (the live sessions), `frames.py` (the WebSocket protocol), `contexts.py` (named
contexts), `metrics.py` (the service's own metrics). Its parts, one folder each:

- `planning/`: which prefixes to warm while the user types;
- `warming/`: sending warm-ups, scheduled so they never slow a final;
- `answering/`: every final request, and the answer before Enter;
- `engine/`: talking to vLLM and what is known of it;
- `cache/`: what vLLM's prefix cache holds (KV events, resident blocks, re-warm);
- `popularity/`: what is asked most, per tenant;
- `states/`: named prefix states.
"""
