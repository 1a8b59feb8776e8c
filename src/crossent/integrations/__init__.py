"""Glue for the frameworks users train with; each submodule imports its own framework.

Importing :mod:`crossent` imports none of them.
"""
