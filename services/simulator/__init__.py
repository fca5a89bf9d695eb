"""The refining service: OpenAI-compatible completions over the tuned LM.

Built in the online-service issue.
"""
