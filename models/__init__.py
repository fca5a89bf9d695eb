"""The ML core of the LLM-InS warm-up service: data, encoders, backbones, baselines, metrics.

No web or queue code lives here: a researcher can run the whole offline pipeline from a
notebook, and the services only compose these pieces.
"""
