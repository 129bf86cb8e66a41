"""The middle tier of the Redis suites as a WSGI app, for gunicorn (test_redis_multiproc).
Its settings come from the environment, as a deployment's would:
``FLASK_OBO_AUTHORITY``, ``FLASK_OBO_CLIENT_ID``, ``FLASK_OBO_CACHE`` (JSON), ... become
``OBO_AUTHORITY``, ``OBO_CLIENT_ID``, ``OBO_CACHE``, ... (Flask's ``from_prefixed_env``).
"""

from __future__ import annotations

from flask import Flask
from support.apps import add_middle_routes

from flask_obo import FlaskOBO

app = Flask("multiproc-middle")
app.config.from_prefixed_env()
FlaskOBO(app)
add_middle_routes(app)
