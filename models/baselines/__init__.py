"""Embedding-simulation baselines: content -> behavioural embedding (DeepMusic, ALDI)."""
