# One image for every ModStack service and pipeline step; the compose service or k8s Deployment
# chooses the entry point (`python -m services.<name>`, `python -m pipelines.<step>`).
#
# The base is an argument, python:3.11-slim by default. Any Debian-like image with Python 3.11,
# its venv module and apt-get works: `make test-container` builds on a Debian bookworm made with
# `debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates` and
# `docker import` (bookworm's python3 is 3.11), because no image registry is reachable where
# it runs (docs/deploy.md). Needs BuildKit (DOCKER_BUILDKIT=1 or buildx) for the cache and
# secret mounts.
ARG BASE_IMAGE=python:3.11-slim

# The runtime requirements: [project].dependencies of pyproject.toml, without the extras the
# lock also pins (dev tools, the peer models). Only this small file reaches the final stage, so
# editing pyproject.toml's tool settings keeps the dependency layer.
FROM ${BASE_IMAGE} AS requirements
COPY pyproject.toml /src/
RUN python3 -c "import tomllib; print(*tomllib.load(open('/src/pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" > /src/runtime.txt

FROM ${BASE_IMAGE}

# Everything installs into a venv at /opt/venv: the same layout on every base (a distro's
# python3 refuses `pip install` into the system, PEP 668).
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    UV_CACHE_DIR=/var/cache/uv \
    UV_LINK_MODE=copy \
    MLFLOW_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=1 \
    DATA_DIR=/data \
    RUN_DIR=/tmp/modstack

WORKDIR /app
# LightGBM loads the GNU OpenMP runtime (libgomp.so.1), which slim and minbase images lack:
# without it no trained champion loads.
RUN apt-get update -q \
    && apt-get install -y -q --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

# Behind a TLS-inspecting proxy, give the build the CA bundle to trust as a secret (it never
# enters a layer): `--secret id=ca-certificates,src=/etc/ssl/certs/ca-certificates.crt`.
# Without it the base image's own CAs are used.
RUN --mount=type=secret,id=ca-certificates \
    if [ -s /run/secrets/ca-certificates ]; then export PIP_CERT=/run/secrets/ca-certificates; fi \
    && python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --quiet uv==0.13.9

# Dependencies next, at the lock's versions: this layer is reused until requirements.lock or the
# runtime requirements change. The cache mount keeps uv's downloads between builds (outside the
# image), so a changed lock downloads only what changed.
COPY requirements.lock ./
COPY --from=requirements /src/runtime.txt ./
RUN --mount=type=cache,target=/var/cache/uv --mount=type=secret,id=ca-certificates \
    if [ -s /run/secrets/ca-certificates ]; then export SSL_CERT_FILE=/run/secrets/ca-certificates; fi \
    && uv pip install --compile-bytecode -r runtime.txt -c requirements.lock

COPY pyproject.toml README.md ./
COPY modstack ./modstack
COPY services ./services
COPY pipelines ./pipelines
COPY features ./features
COPY loadtests ./loadtests
COPY stack ./stack
RUN --mount=type=cache,target=/var/cache/uv --mount=type=secret,id=ca-certificates \
    if [ -s /run/secrets/ca-certificates ]; then export SSL_CERT_FILE=/run/secrets/ca-certificates; fi \
    && uv pip install --compile-bytecode --no-deps . \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin modstack \
    && mkdir -p /data && chown 10001 /data

# Non-root; the root filesystem can be mounted read-only: state lives in /data and /tmp, and
# HOME is /tmp for the libraries that keep a cache or a config under ~ (matplotlib's, say).
ENV HOME=/tmp
USER 10001
EXPOSE 8000 8001 8002 8003 8004
CMD ["python", "-m", "services.serving"]
