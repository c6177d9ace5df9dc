# syntax=docker/dockerfile:1
# airia-test-pod: two stages. The builder compiles the dependencies into /opt/venv; the runtime stage gets
# that venv and the app, and nothing else: no compilers, no package downloads, no shell tools added.

# The one pin of the base image; both stages start from it, so the venv's interpreter path matches.
FROM python:3.11.14-slim-bookworm AS base

FROM base AS builder

# Compilers only for a dependency without a wheel for the build platform; they never reach the runtime stage.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

# Dependencies first: this layer stays cached while only the app's code changes.
COPY requirements.txt /tmp/requirements.txt
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -r /tmp/requirements.txt \
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
RUN groupadd --system --gid 10001 testpod \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
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
