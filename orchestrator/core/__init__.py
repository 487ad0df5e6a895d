"""The session core: from a typed keystroke to a warm-up request, without the web.

Nothing here imports FastAPI or Starlette; `web/` adapts it to HTTP and WebSockets.
"""
