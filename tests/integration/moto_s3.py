"""S3 for the integration tests: moto's server, a local stand-in for an S3-compatible service, and prefect-aws
`S3Bucket` blocks pointed at it (the real client code path up to the wire)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto.server import ThreadedMotoServer
from prefect_aws import AwsClientParameters, AwsCredentials, S3Bucket


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def standin_bucket(endpoint: str, name: str, folder: str = "", config: dict[str, object] | None = None) -> S3Bucket:
    credentials = AwsCredentials(
        aws_access_key_id="standin", aws_secret_access_key="standin-secret", region_name="us-east-1",
        aws_client_parameters=AwsClientParameters(endpoint_url=endpoint, config=config),
    )  # fmt: skip
    return S3Bucket(bucket_name=name, credentials=credentials, bucket_folder=folder)
