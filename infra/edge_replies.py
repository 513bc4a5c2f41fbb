"""What an edge flow answers the master, across the trust boundary: JSON, read back into the model the master
expects, never unpickled.

A machine may be hostile (it runs whatever a suite installs, and its agent holds an API key). Prefect's own results
would not do: a result record names its own serializer, so a record a machine wrote could name pickle and run code
on the master that reads it. So an edge flow persists no Prefect result; it writes its answer as JSON under a key
the master derives from the run and the flow run (`<run id>/edge-replies/<flow run id>.json`), in the run's shared
results directory (Docker) or its results bucket (the cloud), and the master reads those bytes, bounded in size,
with `model_validate_json`: anything but the expected JSON is an error naming the flow run.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, Field, ValidationError

from stroppy_domain.errors import StroppyError

M = TypeVar("M", bound=BaseModel)
MAX_REPLY_BYTES = 64 * 2**20
"""A load's step outputs are the largest answer; more than this is not an answer."""
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$")


class EdgeReplyError(StroppyError):
    """An edge flow's answer is missing, too large, not JSON or not the model expected; names the flow run."""


class ReplyTo(BaseModel):
    """Where an edge flow leaves its answer: the shared results directory, or the results bucket's block."""

    run_id: str = Field(pattern=_ID.pattern)
    directory: str | None = Field(default=None, description="The master's results directory, shared with the machine.")
    s3_block: str | None = Field(default=None, description="prefect-aws `S3Bucket` block of machines that share none.")


def reply_key(run_id: str, flow_run_id: str) -> str:
    """Raises EdgeReplyError for an id that could leave the run's folder."""
    for name, value in (("run id", run_id), ("flow run id", flow_run_id)):
        if not _ID.fullmatch(value):
            raise EdgeReplyError(f"{name} {value!r} cannot name an edge reply")
    return f"{run_id}/edge-replies/{flow_run_id}.json"


def send_reply(reply_to: ReplyTo, flow_run_id: str, answer: BaseModel) -> None:
    """Write `answer` as JSON where the master will read it. Raises EdgeReplyError when it cannot be written."""
    key, payload = reply_key(reply_to.run_id, flow_run_id), answer.model_dump_json().encode()
    try:
        if reply_to.s3_block:
            _bucket(reply_to.s3_block).write_path(key, payload, _sync=True)
        else:
            path = _local_path(reply_to, key)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(payload)
    except EdgeReplyError:
        raise
    except Exception as error:  # OSError locally; botocore raises many unrelated types; all mean "not written"
        raise EdgeReplyError(f"cannot write the reply of flow run {flow_run_id}: {error}") from error


def read_reply(reply_to: ReplyTo, flow_run_id: str, model: type[M]) -> M:
    """The answer of edge flow run `flow_run_id`, as `model`. Raises EdgeReplyError when it is missing, larger than
    `MAX_REPLY_BYTES`, or not `model` as JSON."""
    key = reply_key(reply_to.run_id, flow_run_id)
    try:
        if reply_to.s3_block:
            payload = _bucket(reply_to.s3_block).read_path(key, _sync=True)
        else:
            path = _local_path(reply_to, key)
            if path.stat().st_size > MAX_REPLY_BYTES:
                raise EdgeReplyError(f"the reply of flow run {flow_run_id} is larger than {MAX_REPLY_BYTES} bytes")
            payload = path.read_bytes()
    except EdgeReplyError:
        raise
    except Exception as error:  # OSError locally; botocore raises many unrelated types; all mean "not read"
        raise EdgeReplyError(f"the reply of flow run {flow_run_id} cannot be read: {error}") from error
    if len(payload) > MAX_REPLY_BYTES:
        raise EdgeReplyError(f"the reply of flow run {flow_run_id} is larger than {MAX_REPLY_BYTES} bytes")
    try:
        return model.model_validate_json(payload)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in error.errors()[:5])
        raise EdgeReplyError(
            f"the reply of flow run {flow_run_id} is not a {model.__name__} as JSON: {problems}"
        ) from None


def _local_path(reply_to: ReplyTo, key: str) -> Path:
    if not reply_to.directory:
        raise EdgeReplyError("an edge reply needs a shared directory or a results bucket")
    return Path(reply_to.directory) / key


def _bucket(block: str):  # noqa: ANN202 - prefect-aws is typed loosely
    from prefect_aws import S3Bucket  # noqa: PLC0415 - the AWS SDK loads only for cloud machines

    from infra.prefect_sync import load_block_sync  # noqa: PLC0415

    return load_block_sync(S3Bucket, block)
