"""Benchmarks of wsgi_session against its peers: ``python -m benchmarks``."""
