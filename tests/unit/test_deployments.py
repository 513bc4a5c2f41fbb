"""prefect.yaml: every flow deployed where it belongs, schedules set, and the nightly suite a valid example."""

from __future__ import annotations

import importlib.util
from typing import Any

import yaml

from flows.forked_worker import EDGE_FLOW_MODULES, MASTER_FLOW_MODULES, MASTER_RUN_LIBRARIES
from stroppy_domain.validation import validate_suite
from tests.conftest import EXAMPLES, REPO


def deployments() -> dict[str, dict[str, Any]]:
    document = yaml.safe_load((REPO / "prefect.yaml").read_text())
    return {f"{d['entrypoint']}/{d['name']}": d for d in document["deployments"]}


def test_every_flow_has_its_deployment_on_its_pool() -> None:
    pools = {key: deployment["work_pool"]["name"] for key, deployment in deployments().items()}
    assert pools == {
        "flows.suite:run_suite/suite": "stroppy-master",
        "flows.suite:run_suite/nightly": "stroppy-master",
        "flows.run:run_test/run": "stroppy-master",
        "flows.reaper:reap/scheduled": "stroppy-master",
        "flows.edge:run_load/edge": "stroppy-edge",
        "flows.edge:install_stroppy/edge": "stroppy-edge",
        "flows.edge:start_services/edge": "stroppy-edge",
    }


def test_the_nightly_suite_is_the_pgbench_example_and_valid() -> None:
    nightly = deployments()["flows.suite:run_suite/nightly"]
    assert nightly["schedules"] == [{"cron": "0 2 * * *", "timezone": "UTC"}]
    example = yaml.safe_load((EXAMPLES / "pgbench.yaml").read_text())
    assert nightly["parameters"]["suite"] == example
    validate_suite(nightly["parameters"]["suite"])


def test_the_reaper_runs_every_quarter_hour() -> None:
    reaper = deployments()["flows.reaper:reap/scheduled"]
    assert reaper["schedules"] == [{"interval": 900}]


def test_the_deployments_forms_offer_no_testing_aids_and_no_flow_is_named_like_a_test() -> None:
    """The form the UI shows is the flow's parameter schema; testing aids reach runs through the environment."""
    import importlib  # noqa: PLC0415

    from prefect.utilities.callables import parameter_schema  # noqa: PLC0415

    for entrypoint in {key.split("/")[0] for key in deployments()}:
        module, _, function = entrypoint.partition(":")
        flow = getattr(importlib.import_module(module), function)
        fields = set(parameter_schema(flow.fn).properties)
        assert not any("inject" in field or "fail" in field for field in fields), (entrypoint, fields)
        assert not function.startswith("test"), entrypoint


def test_the_masters_flow_runs_do_not_write_through_their_workers_pipe() -> None:
    """A worker killed mid-suite must leave the runs it started going (tests/e2e/test_master_workers.py)."""
    for key, deployment in deployments().items():
        if deployment["work_pool"]["name"] == "stroppy-master":
            assert deployment["work_pool"]["job_variables"]["stream_output"] is False, key


def test_each_pools_workers_preload_the_modules_of_its_flows_and_no_other() -> None:
    """A flow whose module a worker does not preload would start in a new interpreter, seconds later."""
    used: dict[str, set[str]] = {}
    for deployment in deployments().values():
        used.setdefault(deployment["work_pool"]["name"], set()).add(deployment["entrypoint"].split(":")[0])
    assert used == {"stroppy-master": set(MASTER_FLOW_MODULES), "stroppy-edge": set(EDGE_FLOW_MODULES)}


def test_the_libraries_a_master_preloads_exist_in_a_full_install() -> None:
    """The fork server skips a module it cannot import without a word: a misspelt name would cost every run its
    import again."""
    assert [name for name in MASTER_RUN_LIBRARIES if importlib.util.find_spec(name) is None] == []
