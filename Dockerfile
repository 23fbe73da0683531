# One image for every burrow process: the API, the workers and the scheduler. The command
# picks which (the entrypoint is the `burrow` CLI):
#
#   docker build -t burrow .
#   docker run burrow api examples.shop.app:app --host 0.0.0.0 --port 8000
#   docker run burrow worker examples.shop.app:app --concurrency 64
#   docker run burrow scheduler examples.shop.app:app
#
# Your own app: install it into the image (a derived image, or EXTRAS and a COPY of your
# package) and name it instead of examples.shop.app:app. docs/deploy.md has the details.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# speed: uvloop; shop: SQLAlchemy and the drivers of the example shop.
ARG EXTRAS=speed,shop
RUN python -m venv /opt/venv && /opt/venv/bin/pip install ".[${EXTRAS}]"

FROM python:${PYTHON_VERSION}-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 burrow \
    && useradd --system --uid 10001 --gid burrow --home-dir /app --shell /usr/sbin/nologin burrow
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=burrow:burrow examples ./examples
# Numeric, so Kubernetes' runAsNonRoot can check it.
USER 10001:10001
# 8000: the API (/api/v1, /ui, /healthz, /readyz, /metrics); 9191: a worker's /metrics.
EXPOSE 8000 9191
ENTRYPOINT ["burrow"]
CMD ["api", "examples.shop.app:app", "--host", "0.0.0.0", "--port", "8000", "--log-format", "json"]
