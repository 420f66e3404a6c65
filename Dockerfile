# Creovai → Qualtrics connector: one image for every process (design §2).
#   docker build -t creovai-qualtrics-connector .
#   default command: `service api` on 0.0.0.0:8000; override with `service worker`,
#   `service migrate`, `service create-org ...`, and so on.
#
# The app finds alembic.ini and migrations/ beside its package (/app/service), so the source
# tree lives in /app and the project is installed from there (editable, into /opt/venv). The
# builder and runtime stages use the same base image, so /opt/venv's interpreter path and
# /app are identical in both.

FROM python:3.11-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_NO_INPUT=1 \
    PATH="/opt/venv/bin:$PATH"

RUN python -m venv /opt/venv

WORKDIR /app

# Dependencies first, in their own layer: rebuilt only when the metadata or the pins change.
# constraints.tx[t] copies constraints.txt when it exists and nothing otherwise; an empty
# constraints file pins nothing.
COPY pyproject.toml constraints.tx[t] ./
RUN if [ ! -f constraints.txt ]; then : > constraints.txt; fi \
    && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -c constraints.txt -r /tmp/requirements.txt

# Then the project itself, without touching the dependencies installed above.
COPY README.md alembic.ini ./
COPY migrations/ ./migrations/
COPY service/ ./service/
RUN pip install -c constraints.txt --no-deps -e . \
    && rm -rf ./*.egg-info


FROM python:3.11-slim-bookworm AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH="/opt/venv/bin:$PATH"

RUN groupadd --system --gid 10001 connector \
    && useradd --system --no-log-init --uid 10001 --gid connector \
        --home-dir /app --no-create-home --shell /usr/sbin/nologin connector \
    && mkdir /data \
    && chown connector:connector /data

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app

WORKDIR /app
USER 10001:10001

EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

CMD ["service", "api", "--host", "0.0.0.0", "--port", "8000"]
