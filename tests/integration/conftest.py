"""Fixtures the integration tests share."""

from __future__ import annotations

from tests.integration.moto_s3 import s3_endpoint

__all__ = ["s3_endpoint"]  # a fixture: pytest finds it here by name
