"""Domain rules as plain functions and classes: no Ray, no HTTP, no database.

Actors and deployments are thin shells around what is here; tests/unit exercise it directly.
"""
