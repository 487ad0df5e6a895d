"""Answering: every final request, however it arrives.

`final_request.py` is the one way a final goes to vLLM (admitted, sent with its routing key,
streamed, timed, scored); `session_final.py` builds a session's final from its prompt;
`answer.py` frames it on the WebSocket; `speculation.py` starts the answer before Enter and
hands it over at submit; `stopping.py` says where and why an answer stopped.
"""
