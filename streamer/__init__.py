"""healthstream: a streaming customer-health scorer for SaaS customer-success teams."""

from streamer.foreign_env import set_aside

__version__ = "0.1.0"

# Before any module imports faust or prometheus_client, which would read them (foreign_env.py).
set_aside()
