"""The web side: the FastAPI app, its routes, middleware and request dependencies."""
