"""gunicorn settings that give every worker's application sessions.

    export WSGI_SESSION_SECRET_KEY="$(python -c 'import secrets; print(secrets.token_hex(32))')"
    gunicorn -c examples/gunicorn.conf.py

The hook wraps each worker's application after the fork, configured by the
``WSGI_SESSION_*`` variables; with the default SQLite store every worker
shares the same sessions.
"""

import os

import wsgi_session.gunicorn

wsgi_app = "wsgi_app:app"
chdir = os.path.dirname(os.path.abspath(__file__))
bind = "127.0.0.1:8000"
workers = 2
worker_class = "gthread"
threads = 4

post_worker_init = wsgi_session.gunicorn.post_worker_init
