# One image for every ModStack service and pipeline step; the compose service or k8s Deployment
# chooses the entry point (`python -m services.<name>`, `python -m pipelines.<step>`).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=1 \
    DATA_DIR=/data \
    RUN_DIR=/tmp/modstack

WORKDIR /app
RUN pip install --no-cache-dir uv==0.13.9

# Dependencies first, pinned by the lock: this layer is reused until requirements.lock changes.
COPY requirements.lock ./
RUN uv pip install --system --no-cache --compile-bytecode -r requirements.lock

COPY pyproject.toml README.md ./
COPY modstack ./modstack
COPY services ./services
COPY pipelines ./pipelines
COPY features ./features
COPY loadtests ./loadtests
COPY stack ./stack
RUN uv pip install --system --no-cache --compile-bytecode --no-deps . \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin modstack \
    && mkdir -p /data && chown 10001 /data

# Non-root; the root filesystem can be mounted read-only (state lives in /data and /tmp).
USER 10001
EXPOSE 8000 8001 8002 8003 8004
CMD ["python", "-m", "services.serving"]
