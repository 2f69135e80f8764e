"""Celery workers: claim a job in the database, run ``weightless_core.compress``, store results.

``celery_app`` is what ``celery -A worker.celery_app worker`` loads; ``runner.run_job`` is the
work itself and runs without Celery (tests call it directly).
"""
