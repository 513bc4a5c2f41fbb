"""Yandex Cloud's REST API, for what a run's Terraform state cannot answer: which resources still carry a run's
labels (the sweep after `terraform destroy`, and the reaper's inventory), and deleting them.

Authentication is the service account's authorized key: a PS256-signed JWT exchanged for an IAM token, kept until
shortly before it expires. Every call has a timeout, every operation is waited for with a bound, and errors name
the call and the resource; the key and tokens never appear in them.
"""

from __future__ import annotations

import base64
import json
import time
from typing import TYPE_CHECKING, Any, cast

import httpx
from pydantic import BaseModel, Field, SecretStr

from infra.retries import WaitTimedOut, wait_for
from stroppy_domain.errors import StroppyError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

IAM_AUDIENCE = "https://iam.api.cloud.yandex.net/iam/v1/tokens"
TOKEN_LIFETIME_S = 3600
TOKEN_REFRESH_MARGIN_S = 300
OPERATION_POLL_S = 1.0
PAGE_SIZE = 1000


class YandexApiSettings(BaseModel):
    """Endpoints and bounds of the API calls (the defaults are Yandex Cloud's public endpoints)."""

    iam_url: str = "https://iam.api.cloud.yandex.net"
    compute_url: str = "https://compute.api.cloud.yandex.net"
    vpc_url: str = "https://vpc.api.cloud.yandex.net"
    operation_url: str = "https://operation.api.cloud.yandex.net"
    timeout_s: float = Field(default=30, gt=0, description="Timeout of every HTTP call.")
    operation_timeout_s: float = Field(default=300, gt=0, description="Bound of the wait for one deletion.")


class CloudResource(BaseModel):
    """One resource of the folder, as the sweep and the inventory see it."""

    kind: str
    id: str
    name: str
    description: str = ""
    labels: dict[str, str] = Field(default_factory=dict)


class YandexCloudError(StroppyError):
    """An API call failed or an operation did not finish in time; the message names the call and the resource."""


_COLLECTIONS = {
    # kind -> (settings field of the endpoint, path, response key); deletion goes in this order (VMs first).
    "instance": ("compute_url", "/compute/v1/instances", "instances"),
    "security_group": ("vpc_url", "/vpc/v1/securityGroups", "securityGroups"),
    "subnet": ("vpc_url", "/vpc/v1/subnets", "subnets"),
    "service_account": ("iam_url", "/iam/v1/serviceAccounts", "serviceAccounts"),
}
DELETION_ORDER = tuple(_COLLECTIONS)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed_jwt(key_json: str, now: float) -> str:
    """The JWT Yandex IAM exchanges for a token: PS256 with the authorized key's private key.

    Raises YandexCloudError when `key_json` is not an authorized key with id, service_account_id and private_key."""
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415 - only cloud runs sign
    from cryptography.hazmat.primitives.asymmetric import padding  # noqa: PLC0415

    try:
        key = json.loads(key_json)
        pem = key["private_key"][key["private_key"].index("-----BEGIN") :].encode()
        # Yandex authorized keys are RSA (PS256); the loader's type is every kind of private key.
        private_key = cast("RSAPrivateKey", serialization.load_pem_private_key(pem, password=None))
        header = {"typ": "JWT", "alg": "PS256", "kid": key["id"]}
        claims = {"aud": IAM_AUDIENCE, "iss": key["service_account_id"], "iat": int(now), "exp": int(now) + 3600}
    except (ValueError, KeyError, TypeError) as error:
        raise YandexCloudError(
            "service_account_key is not an authorized key JSON with id, service_account_id and private_key "
            f"({type(error).__name__})"
        ) from None
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}".encode()
    signature = private_key.sign(
        signing_input,
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH),
        hashes.SHA256(),
    )
    return f"{signing_input.decode()}.{_b64url(signature)}"


class YandexCloudApi:
    """The folder's resources through the REST API. Owns its HTTP client: use it as a context manager."""

    def __init__(self, key_json: SecretStr, folder_id: str, settings: YandexApiSettings | None = None) -> None:
        self._key = key_json
        self._folder = folder_id
        self._settings = settings or YandexApiSettings()
        self._http = httpx.Client(timeout=self._settings.timeout_s)
        self._token: tuple[str, float] | None = None

    def __enter__(self) -> YandexCloudApi:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def resources(self) -> list[CloudResource]:
        """Every instance, security group, subnet and service account of the folder.

        Raises YandexCloudError when a listing fails or the key cannot be exchanged for an IAM token (retryable when
        the API did not answer)."""
        return [resource for kind in DELETION_ORDER for resource in self._list(kind)]

    def delete(self, resource: CloudResource) -> bool:
        """Delete one resource and wait for the operation; False when it was already gone.

        Raises YandexCloudError when the API refuses the deletion or does not answer, the operation fails, or it
        does not finish within `operation_timeout_s`."""
        base, path, _ = _COLLECTIONS[resource.kind]
        url = f"{getattr(self._settings, base)}{path}/{resource.id}"
        response = self._request("DELETE", url, f"delete {resource.kind} {resource.name}")
        if response is None:
            return False
        self._wait(response, f"delete {resource.kind} {resource.name}")
        return True

    def _list(self, kind: str) -> Iterator[CloudResource]:
        base, path, key = _COLLECTIONS[kind]
        params = {"folderId": self._folder, "pageSize": str(PAGE_SIZE)}
        while True:
            page = self._request("GET", f"{getattr(self._settings, base)}{path}", f"list {key}", params) or {}
            for item in page.get(key, []):
                yield CloudResource(
                    kind=kind, id=item["id"], name=item.get("name", ""), description=item.get("description", ""),
                    labels=item.get("labels", {}),
                )  # fmt: skip
            if not page.get("nextPageToken"):
                return
            params["pageToken"] = page["nextPageToken"]

    def _wait(self, operation: dict[str, Any], what: str) -> None:
        operation_id = operation.get("id")
        if not operation.get("done"):
            if operation_id is None:
                raise YandexCloudError(f"{what}: the API answered no operation to wait for: {operation}")
            url = f"{self._settings.operation_url}/operations/{operation_id}"

            def finished() -> dict[str, Any] | None:
                answer = self._request("GET", url, f"{what} (operation {operation_id})")
                if answer is None:
                    raise YandexCloudError(f"{what}: operation {operation_id} is unknown to the API")
                return answer if answer.get("done") else None

            try:
                operation = wait_for(finished, self._settings.operation_timeout_s, what, max_delay_s=OPERATION_POLL_S)
            except WaitTimedOut as error:
                raise YandexCloudError(str(error)) from None
        if "error" in operation:
            failure = operation["error"]
            raise YandexCloudError(f"{what}: {failure.get('message', failure)} (code {failure.get('code')})")

    def _request(self, method: str, url: str, what: str, params: dict[str, str] | None = None) -> dict[str, Any] | None:
        """The JSON answer; None for 404 (the resource is gone)."""
        try:
            response = self._http.request(
                method, url, params=params, headers={"Authorization": f"Bearer {self._iam_token()}"}
            )
        except httpx.HTTPError as error:
            raise YandexCloudError(f"{what}: {type(error).__name__}: {error}", retryable=True) from error
        if response.status_code == httpx.codes.NOT_FOUND:
            return None
        if response.is_error:
            raise YandexCloudError(
                f"{what}: HTTP {response.status_code}: {response.text[:300]}", retryable=response.is_server_error
            )
        return response.json()

    def _iam_token(self) -> str:
        now = time.time()
        if self._token is not None and self._token[1] - TOKEN_REFRESH_MARGIN_S > now:
            return self._token[0]
        jwt = signed_jwt(self._key.get_secret_value(), now)
        url = f"{self._settings.iam_url}/iam/v1/tokens"
        try:
            response = self._http.post(url, json={"jwt": jwt})
        except httpx.HTTPError as error:
            raise YandexCloudError(
                f"exchange the service account key for an IAM token: {error}", retryable=True
            ) from error
        if response.is_error:
            raise YandexCloudError(
                f"exchange the service account key for an IAM token: HTTP {response.status_code}: {response.text[:300]}"
            )
        self._token = (response.json()["iamToken"], now + TOKEN_LIFETIME_S)
        return self._token[0]
