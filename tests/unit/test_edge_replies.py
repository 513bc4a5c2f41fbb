"""An edge flow's answer crosses the trust boundary as JSON only (infra.edge_replies): a pickle, or a Prefect result
record naming pickle as its serializer, planted where the master reads is refused with an error, never executed."""

from __future__ import annotations

import base64
import os
import pickle
from pathlib import Path

import pytest

from flows.edge import InstalledTool
from infra.edge_replies import MAX_REPLY_BYTES, EdgeReplyError, ReplyTo, read_reply, reply_key, send_reply

FLOW_RUN = "0b5e3c1e-7a52-4c1b-9a57-5d1f6f0e2a10"
INSTALLED = InstalledTool(binary="/opt/stroppy/stroppy", version="stroppy v5.7.3", binary_sha256="ab" * 32)


class _Exploit:
    """Unpickling this creates `marker`: the proof that a payload ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, ...]]:
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def reply_to(tmp_path: Path) -> ReplyTo:
    return ReplyTo(run_id="run-0123456789ab", directory=str(tmp_path / "results"))


def _plant(reply_to: ReplyTo, payload: bytes) -> None:
    path = Path(reply_to.directory or "") / reply_key(reply_to.run_id, FLOW_RUN)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)


def test_an_answer_comes_back_as_the_model_it_was(reply_to: ReplyTo) -> None:
    send_reply(reply_to, FLOW_RUN, INSTALLED)
    assert read_reply(reply_to, FLOW_RUN, InstalledTool) == INSTALLED


def test_a_planted_pickle_is_refused_and_never_run(reply_to: ReplyTo, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    _plant(reply_to, pickle.dumps(_Exploit(marker)))
    with pytest.raises(EdgeReplyError, match=f"the reply of flow run {FLOW_RUN} is not a InstalledTool as JSON"):
        read_reply(reply_to, FLOW_RUN, InstalledTool)
    assert not marker.exists()


def test_a_prefect_result_record_naming_pickle_is_refused_and_never_run(reply_to: ReplyTo, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    record = (
        '{"metadata": {"storage_key": "x", "serializer": {"type": "pickle", "picklelib": "cloudpickle"}}, '
        f'"result": "{base64.b64encode(pickle.dumps(_Exploit(marker))).decode()}"}}'
    )
    _plant(reply_to, record.encode())
    with pytest.raises(EdgeReplyError, match="binary: Field required"):
        read_reply(reply_to, FLOW_RUN, InstalledTool)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("payload", "said"),
    [
        (b"", "not a InstalledTool as JSON"),
        (b'{"binary": "/opt/stroppy", "version": 5, "binary_sha256": "x"}', "version: Input should be a valid string"),
        (b" " * (MAX_REPLY_BYTES + 1), f"larger than {MAX_REPLY_BYTES} bytes"),
    ],
    ids=["empty", "a field of the wrong type", "too large"],
)
def test_what_is_not_the_expected_json_is_refused(reply_to: ReplyTo, payload: bytes, said: str) -> None:
    _plant(reply_to, payload)
    with pytest.raises(EdgeReplyError, match=said):
        read_reply(reply_to, FLOW_RUN, InstalledTool)


def test_a_missing_answer_or_a_key_outside_the_run_is_an_error(reply_to: ReplyTo) -> None:
    with pytest.raises(EdgeReplyError, match=f"the reply of flow run {FLOW_RUN} cannot be read"):
        read_reply(reply_to, FLOW_RUN, InstalledTool)
    with pytest.raises(EdgeReplyError, match="cannot name an edge reply"):
        read_reply(reply_to, "../../etc/passwd", InstalledTool)
    with pytest.raises(EdgeReplyError, match="needs a shared directory or a results bucket"):
        read_reply(ReplyTo(run_id="run-0123456789ab"), FLOW_RUN, InstalledTool)
