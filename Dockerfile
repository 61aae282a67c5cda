# syntax=docker/dockerfile:1
# clicksam: multi-stage image. The steps mirror the Makefile targets that `make run` / CI use
# (`make web`, `make install`), so what CI proves is what the image does (tests/test_packaging.py).

# ---- stage 1: build the page -------------------------------------------------------------------
FROM node:20-bookworm AS web
WORKDIR /src
COPY Makefile ./
COPY web/package.json web/package-lock.json ./web/
RUN cd web && npm ci --no-audit --no-fund
COPY web ./web
RUN make web

# ---- stage 2: the server -----------------------------------------------------------------------
FROM python:3.11-slim-bookworm AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    CLICKSAM_HOST=0.0.0.0 \
    CLICKSAM_PORT=8000 \
    CLICKSAM_CACHE_DIR=/cache \
    CLICKSAM_DATA_DIR=/data
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 10001 clicksam \
    && mkdir -p /cache /data /app && chown clicksam:clicksam /cache /data /app
WORKDIR /app
USER clicksam
# CPU-only torch first and alone (the same pin as the Makefile), from PyTorch's CPU index
COPY --chown=clicksam:clicksam Makefile pyproject.toml README.md ./
COPY --chown=clicksam:clicksam clicksam ./clicksam
COPY --chown=clicksam:clicksam model ./model
COPY --chown=clicksam:clicksam export ./export
COPY --chown=clicksam:clicksam server ./server
COPY --chown=clicksam:clicksam train ./train
RUN make install VENV=/app/.venv PIP_EXTRA="--index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple"
COPY --chown=clicksam:clicksam --from=web /src/web/dist ./web/dist
ENV PATH=/app/.venv/bin:$PATH
VOLUME ["/cache"]
# the projects' database and images: people's work, keep this volume and back it up
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"
CMD ["clicksam", "serve"]
