# One image for the worker, the API and the migration job; docker-compose.yml
# picks the command (tests/unit/test_compose.py keeps the two in step).
# Production-shaped: no dev tooling, a non-root user, ENV=production (dev
# secrets are refused, so every secret must be set). The `fulfil` ops CLI is
# in the image too: `docker compose exec api fulfil ...`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ENV=production

RUN useradd --system --uid 10001 --home-dir /app --no-create-home app
WORKDIR /app

# Sources listed one by one: the build never picks up .venv/, .data/ or .git/.
COPY pyproject.toml worker.py ./
COPY fulfil/ fulfil/
COPY db/ db/
COPY workflows/ workflows/
COPY activities/ activities/
COPY api/ api/
COPY sandbox/ sandbox/
COPY ops/ ops/
# Bytecode now: PYTHONDONTWRITEBYTECODE stops the processes writing it, and the workflow
# sandbox imports the workflow modules afresh for every run.
RUN pip install . && python -m compileall -q /app && chown -R app:app /app

USER app
# The API; the worker's SDK metrics (WORKER_METRICS_PORT).
EXPOSE 8000 9464
# Idle connections stay open longer than clients and proxies keep theirs (devstack.KEEP_ALIVE_SECONDS).
CMD ["uvicorn", "api.app:app", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers", "--timeout-keep-alive", "75"]
