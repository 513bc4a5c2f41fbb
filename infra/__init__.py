"""Adapters to outside systems, one module each, every SDK loaded lazily."""
