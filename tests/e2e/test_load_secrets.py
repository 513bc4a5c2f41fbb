"""A secret in a load's environment (`stroppy.env.X: {secret: <block>}`): the real `run-load` flow reads it on the
runner from its Secret block into the command's environment; the value is in neither the flow run's parameters,
nor its logs, nor the outcome it answers, and a run naming a block that is not saved is refused before it starts."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

from flows.edge import LoadOutcome, LoadRequest, run_load
from infra.edge_replies import ReplyTo, read_reply
from infra.prefect_sync import refuse_missing_secrets
from stroppy_domain.errors import InvalidSuiteError
from stroppy_domain.load import LoadStep

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

LOGS_WITHIN_S = 60
"""Prefect ships a flow's logs in batches, a few seconds apart."""


@pytest.fixture
def token_block() -> Iterator[tuple[str, str]]:
    name, value = f"load-token-{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(24)
    Secret(value=value).save(name)
    yield name, value
    Secret.delete(name, _sync=True)  # type: ignore[call-arg]


def _request(tmp_path: Path, block: str) -> LoadRequest:
    script = 'printf %s "$API_TOKEN" > seen.txt; echo "token is $API_TOKEN"'
    return LoadRequest(
        run_id="secret-load", output_dir=str(tmp_path / "load"),
        steps=[LoadStep(name="load", argv=["sh", "-c", script], timeout_s=30, secret_env={"API_TOKEN": block})],
        reply_to=ReplyTo(run_id="secret-load", directory=str(tmp_path / "replies")),
    )  # fmt: skip


def _logs(flow_run_id: uuid.UUID, until: str) -> list[str]:
    """The flow run's log messages, once one of them contains `until`."""
    deadline = time.monotonic() + LOGS_WITHIN_S
    with get_client(sync_client=True) as client:
        while True:
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
            messages = [log.message for log in logs]
            if any(until in message for message in messages):
                return messages
            assert time.monotonic() < deadline, f"no log line with {until!r} in {messages}"
            time.sleep(1)


def test_the_runner_reads_a_secret_into_the_load_and_masks_it(token_block: tuple[str, str], tmp_path: Path) -> None:
    name, value = token_block
    request = _request(tmp_path, name)
    state = run_load(request, return_state=True)
    flow_run_id = state.state_details.flow_run_id
    assert state.is_completed() and flow_run_id is not None, state
    assert (tmp_path / "load" / "seen.txt").read_text() == value, "the command's environment holds the value"

    outcome = read_reply(request.reply_to, str(flow_run_id), LoadOutcome)
    assert outcome.steps[0].output_tail == ["token is ***"]
    messages = _logs(flow_run_id, "token is ***")
    assert not [message for message in messages if value in message]
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
    assert name in str(flow_run.parameters) and value not in str(flow_run.parameters)


def test_a_load_naming_a_block_that_is_gone_fails_with_the_variable_and_block(tmp_path: Path) -> None:
    state = run_load(_request(tmp_path, "no-such-load-token"), return_state=True)
    assert state.is_failed(), state
    assert "stroppy.env.API_TOKEN: the Secret block 'no-such-load-token' cannot be read" in str(state.message)
    assert not (tmp_path / "load" / "seen.txt").exists(), "nothing ran"


def test_a_run_naming_an_unsaved_block_is_refused_at_its_path(token_block: tuple[str, str]) -> None:
    name, _ = token_block
    refuse_missing_secrets({"stroppy.env.API_TOKEN": name})
    with pytest.raises(InvalidSuiteError) as refused:
        refuse_missing_secrets({"stroppy.env.API_TOKEN": name, "stroppy.env.OTHER": "no-such-load-token"})
    assert [(issue.path, issue.value) for issue in refused.value.issues] == [
        ("stroppy.env.OTHER", "no-such-load-token")
    ]
