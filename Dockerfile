# syntax=docker/dockerfile:1
# btc-predictor images, two targets from one file:
#   docker build --target api    -t btc-predictor-api .     serving: ONNX Runtime + numpy, no torch
#   docker build --target worker -t btc-predictor-worker .  jobs and schedules: CPU torch for training
# No secret is baked in: BTCP_API_KEY, BTCP_DATABASE_URL (with its password) etc. come from the
# environment at run time (Compose .env, a Kubernetes Secret).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: the wheel only (sources never reach the final images) -------------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# pyproject names README.md as the package readme and force-includes migrations/ in the wheel.
COPY pyproject.toml README.md ./
COPY src ./src
COPY migrations ./migrations
RUN pip wheel --no-deps --wheel-dir /wheels .

# --- base: what both final images share ------------------------------------------------------
FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    BTCP_DATA_DIR=/app/data \
    BTCP_LOG_FORMAT=json \
    XDG_CACHE_HOME=/tmp/.cache \
    MPLCONFIGDIR=/tmp/matplotlib
# Caches go to /tmp (onnxruntime writes $XDG_CACHE_HOME/Microsoft/..., matplotlib its font
# cache): Compose and Kubernetes run these images with a read-only root filesystem.
# A fixed numeric uid so Kubernetes' runAsNonRoot can verify it without resolving a name.
RUN groupadd --system --gid 10001 btcp \
 && useradd --system --uid 10001 --gid btcp --home-dir /app --shell /usr/sbin/nologin btcp \
 && mkdir -p /app/data \
 && chown -R btcp:btcp /app
WORKDIR /app

# --- api dependencies: base install + psycopg ------------------------------------------------
FROM base AS api-venv
COPY --from=builder /wheels /wheels
RUN python -m venv /opt/venv \
 && pip install "$(ls /wheels/btc_predictor-*.whl)[postgres]" \
 && rm -rf /wheels

# --- worker dependencies: the CPU build of torch first, then train + postgres extras ---------
FROM base AS worker-venv
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# torch first from the CPU index: the train extra pins torch==2.13.0, which 2.13.0+cpu satisfies,
# so pip never pulls the multi-GB CUDA build from PyPI.
RUN python -m venv /opt/venv \
 && pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"
COPY --from=builder /wheels /wheels
RUN pip install "$(ls /wheels/btc_predictor-*.whl)[train,postgres]" \
 && rm -rf /wheels

# --- api: the HTTP API ------------------------------------------------------------------------
FROM base AS api
COPY --from=api-venv /opt/venv /opt/venv
# The worker runs as its own service in Compose/Kubernetes; serve must not start another one.
ENV BTCP_EMBEDDED_WORKER=false \
    BTCP_HOST=0.0.0.0 \
    BTCP_PORT=8000
USER 10001:10001
EXPOSE 8000
# Slim images have no curl; urlopen raises (exit 1) on refusal, timeout or a non-2xx status.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=4)"]
ENTRYPOINT ["btc-predictor"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]

# --- worker: jobs (ingest, train, backtest) and the schedules ---------------------------------
FROM base AS worker
COPY --from=worker-venv /opt/venv /opt/venv
# The side server (/health/live, /metrics) must be reachable by Prometheus and the probes.
ENV BTCP_WORKER_HOST=0.0.0.0 \
    BTCP_WORKER_PORT=9101
USER 10001:10001
EXPOSE 9101
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/live' % os.environ.get('BTCP_WORKER_PORT', '9101'), timeout=4)"]
ENTRYPOINT ["btc-predictor"]
CMD ["worker"]
