# Callwarden daemon image.
#
#   docker build -t callwarden .
#   docker run --network host -v callwarden-store:/var/lib/callwarden \
#     -v /etc/callwarden/callwarden.toml:/etc/callwarden/callwarden.toml:ro callwarden
#
# Runs as the unprivileged user callwarden (uid/gid 10001). The store (SQLite) lives on the
# volume /var/lib/callwarden. The config is /etc/callwarden/callwarden.toml: the image ships
# the sample (config/callwarden.toml, lab defaults); mount your own over it. Exit codes:
# 0 stopped, 1 error (e.g. metrics port taken), 74 store cannot be opened, 77 AMI login
# refused, 78 bad configuration (do not restart on 77 and 78).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# Fixed uid/gid, so volume ownership stays right across image rebuilds and hosts.
RUN groupadd --system --gid 10001 callwarden \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/callwarden --no-create-home \
       --shell /usr/sbin/nologin callwarden \
    && install -d -o callwarden -g callwarden -m 0750 /var/lib/callwarden \
    && install -d -o root -g callwarden -m 0750 /etc/callwarden

# The package from this checkout, runtime dependencies only (no [test] extra).
WORKDIR /usr/src/callwarden
COPY pyproject.toml README.md ./
COPY daemon ./daemon
RUN pip install --no-cache-dir . \
    && rm -rf /usr/src/callwarden

COPY config/callwarden.toml config/policy.toml /etc/callwarden/
RUN chown root:callwarden /etc/callwarden/callwarden.toml /etc/callwarden/policy.toml \
    && chmod 0640 /etc/callwarden/callwarden.toml /etc/callwarden/policy.toml

WORKDIR /var/lib/callwarden
# Numeric, so runtimes (Kubernetes runAsNonRoot) can tell it is not root: callwarden:callwarden.
USER 10001:10001
VOLUME /var/lib/callwarden

# Liveness: the daemon's /healthz endpoint (127.0.0.1:9108 by default). If you configure the
# daemon to listen elsewhere, set CALLWARDEN_HEALTHZ_URL to match (docker run -e / compose
# environment:). With --network host the check reaches the host's loopback, like the daemon.
ENV CALLWARDEN_HEALTHZ_URL=http://127.0.0.1:9108/healthz
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['CALLWARDEN_HEALTHZ_URL'], timeout=4)"]

# SIGTERM (docker stop) exits 0 within 2 s; SIGHUP (docker kill -s HUP) reloads the policy.
STOPSIGNAL SIGTERM
ENTRYPOINT ["callwarden"]
CMD ["run", "--config", "/etc/callwarden/callwarden.toml"]
