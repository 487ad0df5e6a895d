"""Prepare a model folder and start vLLM with the flags this product relies on."""
