"""The Weightless service: REST API, persistence and storage shared with the worker."""
