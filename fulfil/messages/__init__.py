"""Workflow messages: the pydantic inputs and outputs of workflows, activities, signals,
updates and queries, one module per process.

One model per input, so fields can be added later without breaking recorded
histories. :mod:`fulfil.messages.common` holds what several processes share.
"""
