# One image for every process of the service: `importer web` (the default),
# `importer worker`, `importer db upgrade`, and Flower (`celery -A worker.app flower`).
# See docker-compose.yml for the distributed deployment.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Installed in editable mode: `importer db upgrade` reads alembic.ini and
# migrations/ from the parent folder of the `importer` package
# (importer.config.PROJECT_ROOT), which must therefore be /app, not site-packages.
# The "ops" extra brings Flower.
COPY . .
RUN pip install --editable ".[ops]" \
 && useradd --system --create-home --uid 10001 --user-group importer \
 && mkdir -p /app/var/metrics \
 && chown -R importer:importer /app/var

# The service's data folder (the embedded `importer serve` keeps its files there; every
# process writes its metrics to var/metrics, where docker-compose.yml mounts the volume
# web and workers share: created here, owned by the service's user, so a new named
# volume starts out writable by it).
ENV IMPORTER_DATA_DIR=/app/var

USER importer

EXPOSE 8000

# No HEALTHCHECK here: the worker, migrate and flower containers share this image
# and serve no /readyz; docker-compose.yml sets a healthcheck per service.
CMD ["importer", "web", "--host", "0.0.0.0", "--port", "8000"]
