"""A stand-in for the parts of Yandex Cloud's REST API this project calls (Yandex Cloud cannot be reached here).

It has Yandex Cloud's paths, payload shapes and status codes: `POST /iam/v1/tokens` checks the JWT's PS256
signature against the registered public key, its `kid`, `iss`, `aud` and expiry; lists of instances, security
groups, subnets and service accounts by `folderId`, paged by `pageSize`/`pageToken`; `DELETE` answers an operation
that is done only when polled at `/operations/{id}`; unknown ids are 404; a missing or wrong token is 401.

The stand-in Terraform module of the tests creates and destroys resources through `/standin/...`, so state held
here is what "the cloud" holds: tests read it as `YandexCloudStandIn.resources`.
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.standin.http_server import JsonHandler, StandInServer

COLLECTIONS = {
    "/compute/v1/instances": ("instance", "instances"),
    "/vpc/v1/securityGroups": ("security_group", "securityGroups"),
    "/vpc/v1/subnets": ("subnet", "subnets"),
    "/iam/v1/serviceAccounts": ("service_account", "serviceAccounts"),
}
KINDS = {kind: path for path, (kind, _) in COLLECTIONS.items()}


def authorized_key(service_account_id: str = "ajestandinaccount") -> tuple[str, rsa.RSAPrivateKey]:
    """An authorized key JSON shaped like the ones Yandex Cloud issues, and its private key."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    key = {
        "id": "ajekeystandin",
        "service_account_id": service_account_id,
        "created_at": "2026-11-27T00:00:00Z",
        "key_algorithm": "RSA_2048",
        "public_key": public,
        "private_key": "PLEASE DO NOT REMOVE THIS LINE! Yandex.Cloud SA Key ID <ajekeystandin>\n" + pem,
    }
    return json.dumps(key), private


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class YandexCloudStandIn(StandInServer):
    def __init__(self, key_json: str, folder_id: str, page_size_cap: int = 2) -> None:
        key = json.loads(key_json)
        self.key_id = key["id"]
        self.service_account_id = key["service_account_id"]
        self.public_key = serialization.load_pem_public_key(key["public_key"].encode())
        self.folder_id = folder_id
        self.page_size_cap = page_size_cap  # small, so every list goes through pagination
        self.resources: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self.tokens: set[str] = set()
        self.token_exchanges = 0
        self.lock = threading.Lock()
        self._ids = itertools.count(1)
        super().__init__(_handler_for(self), "yandex-standin")

    def add(self, kind: str, name: str, labels: dict[str, str] | None = None, **extra: Any) -> str:
        with self.lock:
            resource_id = f"{kind[:3]}{next(self._ids):05d}"
            self.resources[resource_id] = {
                "kind": kind, "id": resource_id, "folderId": self.folder_id, "name": name,
                "labels": labels or {}, **extra,
            }  # fmt: skip
            return resource_id

    def named(self, kind: str) -> dict[str, dict[str, Any]]:
        with self.lock:
            return {item["name"]: item for item in self.resources.values() if item["kind"] == kind}

    def issue_token(self, jwt: str) -> str | None:
        try:
            header_part, claims_part, signature_part = jwt.split(".")
            header, claims = json.loads(_unb64(header_part)), json.loads(_unb64(claims_part))
            self.public_key.verify(  # type: ignore[union-attr,call-arg]
                _unb64(signature_part),
                f"{header_part}.{claims_part}".encode(),
                padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=hashes.SHA256.digest_size),
                hashes.SHA256(),
            )
        except (ValueError, InvalidSignature):
            return None
        valid = (
            header.get("alg") == "PS256"
            and header.get("kid") == self.key_id
            and claims.get("iss") == self.service_account_id
            and claims.get("aud") == "https://iam.api.cloud.yandex.net/iam/v1/tokens"
            and claims.get("iat", 0) - 60 <= time.time() < claims.get("exp", 0)
        )
        if not valid:
            return None
        token = f"t1.standin.{next(self._ids)}"
        with self.lock:
            self.tokens.add(token)
            self.token_exchanges += 1
        return token


def _handler_for(standin: YandexCloudStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(JsonHandler):
        def _authorized(self) -> bool:
            token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            if token in standin.tokens:
                return True
            self._reply(401, {"code": 16, "message": "The token is invalid"})
            return False

        def do_POST(self) -> None:
            path = urlsplit(self.path).path
            if path == "/iam/v1/tokens":
                token = standin.issue_token(self._body().get("jwt", ""))
                if token is None:
                    self._reply(401, {"code": 16, "message": "Invalid JWT"})
                else:
                    self._reply(200, {"iamToken": token, "expiresAt": "2026-11-28T00:00:00Z"})
            elif path.startswith("/standin/"):
                body = self._body()
                kind = path.removeprefix("/standin/")
                self._reply(200, {"id": standin.add(kind, body["name"], body["labels"], **body.get("extra", {}))})
            else:
                self._reply(404, {"code": 5, "message": f"no route {path}"})

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if not self._authorized():
                return
            if url.path.startswith("/operations/"):
                operation = standin.operations.get(url.path.removeprefix("/operations/"))
                if operation is None:
                    self._reply(404, {"code": 5, "message": "operation not found"})
                    return
                operation["done"] = True
                self._reply(200, operation)
                return
            if url.path not in COLLECTIONS:
                self._reply(404, {"code": 5, "message": f"no route {url.path}"})
                return
            kind, key = COLLECTIONS[url.path]
            query = parse_qs(url.query)
            if query.get("folderId") != [standin.folder_id]:
                self._reply(403, {"code": 7, "message": "Permission denied to folder"})
                return
            size = min(int(query.get("pageSize", ["1000"])[0]), standin.page_size_cap)
            start = int(query.get("pageToken", ["0"])[0])
            with standin.lock:
                items = sorted(
                    (item for item in standin.resources.values() if item["kind"] == kind), key=lambda i: i["id"]
                )
            page = [{k: v for k, v in item.items() if k != "kind"} for item in items[start : start + size]]
            body: dict[str, Any] = {key: page} if page else {}
            if start + size < len(items):
                body["nextPageToken"] = str(start + size)
            self._reply(200, body)

        def do_DELETE(self) -> None:
            path = urlsplit(self.path).path
            if path.startswith("/standin/"):
                kind, name = path.removeprefix("/standin/").split("/", 1)
                with standin.lock:
                    for resource_id, item in list(standin.resources.items()):
                        if item["kind"] == kind and item["name"] == name:
                            del standin.resources[resource_id]
                self._reply(200, {})
                return
            if not self._authorized():
                return
            collection, _, resource_id = path.rpartition("/")
            with standin.lock:
                item = standin.resources.get(resource_id)
                if collection not in COLLECTIONS or item is None or item["kind"] != COLLECTIONS[collection][0]:
                    self._reply(404, {"code": 5, "message": f"{resource_id} not found"})
                    return
                if item["kind"] == "subnet" and any(
                    other["kind"] == "instance" and other.get("subnetName") == item["name"]
                    for other in standin.resources.values()
                ):
                    self._reply(400, {"code": 9, "message": "Subnet is in use by an instance"})
                    return
                del standin.resources[resource_id]
                operation = {"id": f"op{resource_id}", "description": f"delete {resource_id}", "done": False}
                standin.operations[operation["id"]] = operation
            self._reply(200, operation)

    return Handler
