"""WSGI entry point: `gunicorn wsgi:app`."""

from batchsvc import create_app

app = create_app()
