"""What tests and benchmarks share, apart from the eval: the fake vLLM (`fake_vllm.py`, with
`fake_asgi.py`, `fake_records.py`, `fake_checks.py`) and the one way to run an ASGI app on
uvicorn for them (`serving.py`: in a thread, or in the running event loop)."""
