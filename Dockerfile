# syntax=docker/dockerfile:1
# canary-bot's image: a wheel built in one stage, installed into a clean slim image in the next.
# Both stages use the same pinned base; bump the patch version here (and nowhere else).

FROM python:3.11.13-slim-bookworm AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY commands ./commands
COPY policies ./policies
RUN pip wheel --no-deps --wheel-dir /wheels .


FROM python:3.11.13-slim-bookworm
ARG VERSION=0.1.0
ARG SOURCE_URL=https://github.com/example/canary-bot
LABEL org.opencontainers.image.title="canary-bot" \
      org.opencontainers.image.description="Slack bot for Istio canary rollouts, health-gated by Prometheus" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="Apache-2.0"

# Binary wheels only: nothing is compiled here, so no compiler is installed here either.
# The wheel comes in through a bind mount, so it leaves no layer behind.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --disable-pip-version-check --only-binary=:all: /wheels/*.whl \
 && groupadd --system --gid 10001 canary \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin canary \
 && canary-bot --help >/dev/null

# The root filesystem is read-only in the Helm chart: matplotlib's cache goes to /tmp (an
# emptyDir there), and no .pyc files are written at run time (pip compiled them at install).
ENV MPLCONFIGDIR=/tmp \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CANARY_HTTP_HOST=0.0.0.0 \
    CANARY_HTTP_PORT=3000

USER 10001:10001
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('CANARY_HTTP_PORT', '3000'), timeout=2)"]
ENTRYPOINT ["canary-bot"]
CMD ["serve"]
