# The healthstream app (`streamer worker`, `streamer view`) for docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# only what `pip install .` needs: no .venv, .cache (Kafka jars) or .local (stack data)
COPY pyproject.toml README.md ./
COPY streamer ./streamer
RUN pip install . \
 && useradd --create-home --uid 10001 healthstream

USER healthstream
CMD ["streamer", "--help"]
