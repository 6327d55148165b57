"""healthstream: a streaming customer-health scorer for SaaS customer-success teams."""

__version__ = "0.1.0"
