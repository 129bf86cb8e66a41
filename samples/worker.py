"""The middle tier's Celery worker: ``celery -A samples.worker worker``.

It builds the same Flask app as ``middle_tier.py`` (same OBO_* and CELERY_* settings), so jobs
run inside it and flask-obo finds its configuration, token cache and credential there.
"""

from __future__ import annotations

from celery import Celery

from .middle_tier import create_app

flask_app = create_app()
celery_app: Celery = flask_app.extensions["celery"]
