"""What vLLM's prefix cache holds: `kv_events.py` follows vLLM's KV events, `resident.py`
indexes the resident block chains they describe, `rewarm.py` warms what is hot again after a
restart or an eviction.
"""
