"""The worker: offline commands (benchmark) now; Celery tasks come with the online service."""
