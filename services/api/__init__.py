"""The REST API (FastAPI): items, interactions, recommendations, jobs.

Built in the online-service issue.
"""
