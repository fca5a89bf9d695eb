"""Alembic migrations of the relational store (see :meth:`services.store.Store.migrate`).

A schema change is a new revision in ``versions/``: change :mod:`services.tables`, then
``alembic -c services/migrations/alembic.ini revision --autogenerate -m "what changed"``
against a database at the previous head (``LLMINS_DATABASE_URL``, default the state
folder's SQLite file), and read what it wrote. Every process upgrades to the head when it
opens the store.
"""
