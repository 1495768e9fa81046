"""``python -m wsgi_session``: the same commands as ``wsgi-session``."""

from wsgi_session.cli import main

raise SystemExit(main())
