"""Core package shared by the API, the worker and the workflows.

Settings, pydantic models of workflow inputs/outputs and statuses, money,
ids, the Temporal data converter with its payload codec, and the token vault.
"""
