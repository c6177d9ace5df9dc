# syntax=docker/dockerfile:1
# airia-test-pod: two stages. The builder installs the dependencies' wheels into /opt/venv; the runtime stage gets
# that venv and the app, and nothing else: no compilers, no package downloads, no shell tools added.

# The one pin of the base image; both stages start from it, so the venv's interpreter path matches.
FROM python:3.11.14-slim-bookworm AS base

FROM base AS builder

# Build-time only, for corporate builds: a package index (build argument) and a CA bundle that trusts a
# TLS-inspecting proxy (build secret `build-ca`, e.g. `--secret id=build-ca,src=/etc/ssl/certs/ca-certificates.crt`).
# Both stay in this stage: the runtime stage declares neither, so neither reaches the image or its history.
ARG PIP_INDEX_URL=https://pypi.org/simple

# Dependencies first: this layer stays cached while only the app's code changes.
# Every pinned dependency ships wheels for amd64 and arm64, so no compiler is installed; a dependency without
# one fails here instead of pulling a toolchain in. No bytecode is compiled at install time (it would add
# ~23 MB); the read-only runtime compiles in memory what it imports.
COPY requirements.txt /tmp/requirements.txt
RUN --mount=type=secret,id=build-ca,required=false \
    if [ -s /run/secrets/build-ca ]; then export PIP_CERT=/run/secrets/build-ca; fi \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-compile --only-binary=:all: \
       -r /tmp/requirements.txt \
    && /opt/venv/bin/pip uninstall --yes --quiet pip setuptools

FROM base AS runtime

# The release pipeline passes the version (app/__init__.py) and the commit; a local build says so instead.
ARG VERSION=dev
ARG REVISION=unknown
ARG SOURCE=https://github.com/airia/airia-test-pod
LABEL org.opencontainers.image.title="airia-test-pod" \
      org.opencontainers.image.description="Checks that the infrastructure the Airia platform needs is ready" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

# A fixed high UID/GID so Kubernetes' runAsNonRoot can verify it and it never collides with a host user.
# Not --system: system accounts must stay below SYS_UID_MAX (999), and useradd warns for 10001.
RUN groupadd --gid 10001 testpod \
    && useradd --uid 10001 --gid 10001 --no-create-home --no-log-init --home-dir /nonexistent \
       --shell /usr/sbin/nologin testpod

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    PORT=8080

COPY --from=builder /opt/venv /opt/venv
WORKDIR /opt/airia-test-pod
COPY app/ ./app/

USER 10001:10001
EXPOSE 8080

# Python instead of curl: the image carries no HTTP client tools. urlopen raises on any non-2xx answer.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8080') + '/health/live', timeout=3)"]

ENTRYPOINT ["python", "-m", "app"]
CMD ["serve"]
