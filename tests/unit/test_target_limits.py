"""Each target's run limit comes from the master's settings; a target left out gets the default."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from infra.settings import DEFAULT_TARGET_RUN_LIMIT, OrchestrationSettings
from infra.target_slots import limit_name
from stroppy_domain.model import Target


@pytest.mark.parametrize(
    ("given", "docker", "cloud"),
    [
        (None, DEFAULT_TARGET_RUN_LIMIT, DEFAULT_TARGET_RUN_LIMIT),
        ('{"docker": 2}', 2, DEFAULT_TARGET_RUN_LIMIT),
        ('{"docker": 1, "yandex_cloud": 30}', 1, 30),
    ],
)
def test_each_target_has_its_limit(monkeypatch: pytest.MonkeyPatch, given: str | None, docker: int, cloud: int) -> None:
    if given is not None:
        monkeypatch.setenv("STROPPY_TARGET_RUN_LIMITS", given)
    settings = OrchestrationSettings()
    assert (settings.target_run_limit(Target.DOCKER), settings.target_run_limit(Target.YANDEX_CLOUD)) == (docker, cloud)


@pytest.mark.parametrize(("given", "named"), [('{"docker": 0}', "docker"), ('{"aws": 3}', "aws")])
def test_a_limit_below_one_or_of_no_target_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch, given: str, named: str
) -> None:
    monkeypatch.setenv("STROPPY_TARGET_RUN_LIMITS", given)
    with pytest.raises(ValidationError, match=f"target_run_limits.{named}"):
        OrchestrationSettings()


def test_every_target_has_a_limit_of_its_own() -> None:
    assert len({limit_name(target) for target in Target}) == len(Target)
    assert limit_name(Target.YANDEX_CLOUD) == "stroppy-target-yandex_cloud"
