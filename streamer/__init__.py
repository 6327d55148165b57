"""healthstream: a streaming customer-health scorer for SaaS customer-success teams."""

import os

from streamer.foreign_env import SET_ASIDE, set_aside

__version__ = "0.1.0"

# Before any module imports faust, prometheus_client or matplotlib, which would read them
# (foreign_env.py).
SET_ASIDE.extend(set_aside(os.environ))
