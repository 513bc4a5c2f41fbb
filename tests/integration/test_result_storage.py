"""Result storage in a local directory, and in S3 through prefect-aws against a local S3-compatible server (moto)."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from infra.result_storage import LocalResultStorage, ResultStorageError, S3ResultStorage
from tests.integration.moto_s3 import standin_bucket

FILES = {"load/summary.json": '{"metrics": {}}', "load/pgbench_log.1": "0 1 1000 0 1 1\n", "result.json": "{}"}


@pytest.fixture
def run_files(tmp_path: Path) -> Path:
    source = tmp_path / "run"
    for name, content in FILES.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text(content)
    return source


def test_local_storage_copies_the_tree_and_a_retry_is_harmless(tmp_path: Path, run_files: Path) -> None:
    storage = LocalResultStorage(tmp_path / "archive")
    location = storage.store("run-abc", run_files)
    assert storage.store("run-abc", run_files) == location
    stored = {str(p.relative_to(location)): p.read_text() for p in Path(location).rglob("*") if p.is_file()}
    assert stored == FILES


def test_local_storage_names_the_file_it_could_not_store(tmp_path: Path, run_files: Path) -> None:
    blocker = tmp_path / "archive"
    blocker.write_text("a file where the directory should be")
    with pytest.raises(ResultStorageError, match=r"cannot store .*(summary.json|pgbench_log)"):
        LocalResultStorage(blocker).store("run-abc", run_files)


def test_s3_storage_uploads_every_file_under_the_run(s3_endpoint: str, run_files: Path) -> None:
    client = boto3.client(
        "s3", endpoint_url=s3_endpoint, region_name="us-east-1",
        aws_access_key_id="standin", aws_secret_access_key="standin-secret",
    )  # fmt: skip
    client.create_bucket(Bucket="results")
    location = S3ResultStorage(standin_bucket(s3_endpoint, "results", "nightly")).store("run-abc", run_files)
    assert location == "s3://results/nightly/run-abc"
    listed = client.list_objects_v2(Bucket="results", Prefix="nightly/run-abc/")["Contents"]
    assert sorted(item["Key"] for item in listed) == sorted(f"nightly/run-abc/{name}" for name in FILES)
    body = client.get_object(Bucket="results", Key="nightly/run-abc/load/summary.json")["Body"].read().decode()
    assert body == FILES["load/summary.json"]


def test_s3_storage_fetches_what_was_stored_under_a_prefix(s3_endpoint: str, run_files: Path, tmp_path: Path) -> None:
    boto3.client(
        "s3", endpoint_url=s3_endpoint, region_name="us-east-1",
        aws_access_key_id="standin", aws_secret_access_key="standin-secret",
    ).create_bucket(Bucket="fetched")  # fmt: skip
    storage = S3ResultStorage(standin_bucket(s3_endpoint, "fetched", "nightly"))
    storage.store("run-abc/load", run_files / "load")
    fetched = storage.fetch("run-abc/load", tmp_path / "master")
    assert sorted(fetched) == ["pgbench_log.1", "summary.json"]
    assert (tmp_path / "master" / "summary.json").read_text() == FILES["load/summary.json"]
    with pytest.raises(ResultStorageError, match=r"cannot fetch run-abc/load from s3://absent"):
        S3ResultStorage(standin_bucket(s3_endpoint, "absent")).fetch("run-abc/load", tmp_path / "nowhere")


def test_s3_storage_reports_a_missing_bucket(s3_endpoint: str, run_files: Path) -> None:
    with pytest.raises(ResultStorageError, match="s3://absent"):
        S3ResultStorage(standin_bucket(s3_endpoint, "absent")).store("run-abc", run_files)
