# The orchestrator alone (no engine, no torch): vLLM runs in its own container.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY orchestrator orchestrator
COPY vllm_launch vllm_launch
COPY datasets datasets
COPY ui_static ui_static
RUN pip install --no-cache-dir .
ENV PREFILL_HOST=0.0.0.0
EXPOSE 8000
CMD ["python", "-m", "orchestrator"]
