# voicebridge's service image: the Procfile's `voicebridge serve` on $PORT, as a non-root user.
#
#   docker build -t voicebridge .
#   docker run --env-file .env -p 8000:8000 --stop-timeout 30 voicebridge
#
# Give it a stop grace period longer than SHUTDOWN_TIMEOUT_S (25 s by default): Docker's own
# default of 10 s would kill a draining server mid-call. Compose: `stop_grace_period: 30s`;
# Kubernetes: `terminationGracePeriodSeconds: 30`. README "Deploying for real" has the rest.

# A wheel of voicebridge alone; its dependencies are installed from PyPI in the image below.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY voicebridge ./voicebridge
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8000
COPY --from=build /wheels /tmp/wheels
RUN pip install /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels \
    && groupadd --system --gid 10001 voicebridge \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /app \
        --shell /usr/sbin/nologin voicebridge
WORKDIR /app
# Numeric, so Kubernetes' runAsNonRoot can check it. The user can write nowhere in the image:
# a RECORD_DIR must be a volume it may write to.
USER 10001:10001
EXPOSE 8000
# SIGTERM starts the drain: no new calls, active ones end with a closing line, then exit 0.
STOPSIGNAL SIGTERM
# Liveness from inside the container, with the standard library (slim images have no curl).
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]
# Exec form: voicebridge itself is PID 1 and receives the stop signal.
CMD ["voicebridge", "serve"]
