"""Prefect Block types: connection settings and credentials. Blocks import nothing from this project."""
