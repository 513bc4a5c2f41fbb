"""Connection settings for the Redis that holds run ledgers and subnet reservations."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prefect.blocks.core import Block
from pydantic import Field, HttpUrl, SecretStr

if TYPE_CHECKING:
    import redis


class RedisConnection(Block):
    """Where Redis is and how long to wait for it. Every client it makes has bounded socket timeouts.

    Examples:
        Ping Redis with a client of the saved connection:
        ```python
        from blocks.redis import RedisConnection

        redis_connection = RedisConnection.load("BLOCK_NAME")
        with redis_connection.get_client() as client:
            client.ping()
        ```
    """

    _block_type_name = "Stroppy Redis Connection"
    _description = "Redis used by stroppy-flows for subnet reservations and run ledgers."
    _documentation_url = HttpUrl("https://redis.readthedocs.io/en/stable/connections.html")

    url: str = Field(default="redis://127.0.0.1:6379/0", description="redis:// or rediss:// URL, without password.")
    password: SecretStr | None = Field(default=None, description="Password, if the server requires one.")
    timeout_s: float = Field(default=5.0, gt=0, le=120, description="Connect and read timeout of every call.")

    def get_client(self) -> redis.Redis:
        """A new client; the caller owns it and closes it (it is a context manager)."""
        import redis  # noqa: PLC0415 - the SDK loads only when a client is asked for

        return redis.Redis.from_url(
            self.url,
            password=self.password.get_secret_value() if self.password else None,
            socket_timeout=self.timeout_s,
            socket_connect_timeout=self.timeout_s,
        )
