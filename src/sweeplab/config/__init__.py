"""Configuration: the structured-config schema (schema.py) and the range checks run before any compute (checks.py)."""
