"""A flow run reuses the blocks it loaded (infra.connections.saved_block): a test run reads the same blocks at nearly
every step. Outside a flow run, and in another flow run, a block saved again is read as saved (real Prefect server)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from prefect import flow
from prefect.blocks.system import Secret

from infra.connections import delete_block, saved_block

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture
def secret_name() -> Iterator[str]:
    name = f"reuse-{uuid.uuid4().hex[:8]}"
    Secret(value="first").save(name)
    yield name
    delete_block(Secret, name)


def _value(name: str) -> str | None:
    block = saved_block(Secret, name)
    return None if block is None else str(block.get())


@flow(name="block-reuse-probe", persist_result=False)
def _read_save_read(name: str, saved_again: str) -> tuple[str | None, str | None]:
    before = _value(name)
    Secret(value=saved_again).save(name, overwrite=True)
    return before, _value(name)


def test_a_flow_run_reuses_a_block_it_loaded_and_others_read_it_as_saved(secret_name: str) -> None:
    assert _read_save_read(secret_name, "second") == ("first", "first")
    assert _value(secret_name) == "second", "outside a flow run a block is read as saved"
    assert _read_save_read(secret_name, "third") == ("second", "second"), "another flow run loads its own"
    assert _value(secret_name) == "third"


def test_a_flow_run_reuses_a_missing_block_as_missing() -> None:
    name = f"reuse-{uuid.uuid4().hex[:8]}"
    try:
        assert _read_save_read(name, "saved") == (None, None)
        assert _value(name) == "saved"
    finally:
        delete_block(Secret, name)
