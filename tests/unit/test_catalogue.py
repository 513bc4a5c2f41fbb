"""The image catalogue is a setting of the master: a suite is validated against the catalogue in force, so a site
with a registry can offer other PostgreSQL versions."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from infra.images import ImageSet, planner_settings
from infra.settings import OrchestrationSettings
from stroppy_domain.errors import InvalidSuiteError
from stroppy_domain.model import Target
from stroppy_domain.placement import plan_run
from stroppy_domain.validation import validate_suite
from tests.conftest import fixed_passwords, fresh_suite

SITE_CATALOGUE = {"postgres": {"16": "registry.example/pg:16.9-1", "18": "registry.example/pg:18.1-1"}}


def postgres_16_suite() -> dict:
    suite = fresh_suite()
    suite["tests"] = suite["tests"][:1]
    suite["tests"][0]["database"]["instance"]["settings"] = {"version": 16}
    return suite


def test_without_a_catalogue_setting_the_checkouts_own_images_serve_postgresql_17_only() -> None:
    settings = planner_settings(OrchestrationSettings())
    assert settings.images == ImageSet.for_checkout().catalogue()
    with pytest.raises(InvalidSuiteError, match="no PostgreSQL image for '16'"):
        validate_suite(postgres_16_suite(), settings=settings)


def test_a_site_catalogue_from_the_environment_is_the_one_validation_and_planning_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STROPPY_IMAGE_CATALOGUE", json.dumps(SITE_CATALOGUE))
    settings = planner_settings(OrchestrationSettings())
    suite = validate_suite(postgres_16_suite(), settings=settings)
    plan = plan_run(suite.tests[0], Target.DOCKER, "10.1.2.0/24", settings, fixed_passwords)
    images = {container.image for machine in plan.machines for container in machine.containers}
    assert "registry.example/pg:16.9-1" in images
    with pytest.raises(InvalidSuiteError, match="no PostgreSQL image for '17'"):
        validate_suite(fresh_suite(), settings=settings)


@pytest.mark.parametrize(
    ("catalogue", "problem"),
    [
        ({"postgres": {"15": "registry.example/pg:15"}}, "must be a PostgreSQL version"),
        ({"postgres": {"16": "registry.example/pg:latest"}}, "pinned"),
        ({"postgres": {"16": "registry.example/pg"}}, "pinned"),
        ({"etcd": "not an image!"}, "not an image reference"),
    ],
)
def test_a_bad_catalogue_setting_is_refused_naming_the_field(
    monkeypatch: pytest.MonkeyPatch, catalogue: dict, problem: str
) -> None:
    monkeypatch.setenv("STROPPY_IMAGE_CATALOGUE", json.dumps(catalogue))
    with pytest.raises(ValidationError, match=problem) as error:
        OrchestrationSettings()
    assert "image_catalogue" in str(error.value)
