"""What vLLM's prefix cache holds: `kv_events.py` follows vLLM's KV events, `resident.py`
indexes the resident block chains they describe, `rewarm.py` warms the popular contexts again
when vLLM (re)starts (evicted chains are warmed again by the sessions and the state keeper,
through `core/services.py`).
"""
