"""prefill-ahead: warm vLLM's prefix cache while the user types."""
