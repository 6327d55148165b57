# The healthstream app image (`streamer worker`, `streamer view`) for docker-compose.yml: one image,
# the runtime dependencies only (no [backtest] or [dev] extra), pinned by requirements.lock.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# only what `pip install .` needs: no .venv, .cache (Kafka jars) or .local (stack data)
COPY requirements.lock pyproject.toml README.md ./
COPY streamer ./streamer
RUN pip install -c requirements.lock . \
 && useradd --create-home --uid 10001 healthstream \
 && install -d -o healthstream -g healthstream /home/healthstream/state

USER healthstream
WORKDIR /home/healthstream
# the worker's RocksDB state (a named volume in docker-compose.yml)
ENV HEALTHSTREAM_DATA_DIR=/home/healthstream/state
CMD ["streamer", "--help"]
