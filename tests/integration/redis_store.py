"""The real Redis the integration tests use (scripts/services.sh starts it), emptied of one store's keys."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis

from blocks.redis import RedisConnection

REDIS_URL = os.environ.get("STROPPY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@contextmanager
def emptied_redis(key_prefix: str) -> Iterator[redis.Redis]:
    """A client of the test Redis with every key under `key_prefix` deleted first; fails the test when Redis is
    not running."""
    connection = RedisConnection(url=REDIS_URL, timeout_s=5).get_client()
    try:
        connection.ping()
    except redis.ConnectionError as error:
        pytest.fail(f"Redis is not running at {REDIS_URL}; start it with `bash scripts/services.sh start`: {error}")
    for key in connection.scan_iter(f"{key_prefix}:*"):
        connection.delete(key)
    try:
        yield connection
    finally:
        connection.close()


def in_processes(target: Callable[..., None], arguments: list[tuple[Any, ...]], answers: int) -> list[Any]:
    """Run `target(*args, start, results)` in one forked process per `arguments` entry, all released together by
    the barrier `start`; returns the `answers` items they put on `results`, and checks every process exited 0."""
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    start = context.Barrier(len(arguments))
    workers = [context.Process(target=target, args=(*args, start, results)) for args in arguments]
    for process in workers:
        process.start()
    collected = [results.get(timeout=120) for _ in range(answers)]
    for process in workers:
        process.join(timeout=60)
        assert process.exitcode == 0
    return collected
