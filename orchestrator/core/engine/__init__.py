"""The engine: talking to vLLM and what is known of it.

`vllm_client.py` (one shared HTTP client, errors mapped once), `salt.py` (per-tenant cache
salts and routing keys), `watch.py` (is vLLM up?), `backoff.py` (the one exponential
back-off while vLLM fails), `vllm_metrics.py` (vLLM's own figures), `prefill_cost.py` (what
prefill costs on this engine, fitted as it runs).
"""
