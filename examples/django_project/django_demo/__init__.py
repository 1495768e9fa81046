"""A small Django project whose sessions are kept by wsgi_session."""
