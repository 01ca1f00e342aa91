# hf-gateway: the gateway (and, with another command, the simulator) in one small image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Metadata first, sources second: editing code does not invalidate the layer order below.
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN pip install . \
    && useradd --system --uid 10001 --no-create-home gateway

USER gateway
EXPOSE 8080
CMD ["hf-gateway", "serve", "--host", "0.0.0.0"]
