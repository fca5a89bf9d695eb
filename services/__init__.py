"""Service plumbing shared by the API, the worker and the simulator (settings, stores)."""
