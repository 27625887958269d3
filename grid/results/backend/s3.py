"""S3 and S3-compatible stores. An object appears whole when its upload completes, so a file is
one PUT, and there are no folders to make. With boto3, the conditional requests that pyarrow's S3
filesystem cannot send: a create that fails when the key exists (If-None-Match: *: an attempt's
row written once however many writers race, an attempt number claimed once) and a replace that
fails when someone else replaced it first (If-Match: the lease, which expires when its holder stops
refreshing it). Endpoint and scheme come from the results URI's query as pyarrow reads them;
credentials and anything unset from the standard AWS chain. Without boto3 it creates and locks
as any pyarrow filesystem does (arrow.py)."""

from __future__ import annotations

import contextlib
import urllib.parse
from collections.abc import Callable
from typing import Any

import pyarrow.fs as pafs

from grid.errors import ResultsError
from grid.results.backend.arrow import ArrowBackend, Fill
from grid.results.backend.base import Claim, Lock
from grid.results.backend.retry import transient


def has_boto3() -> bool:
    try:
        import boto3  # noqa: F401
    except ImportError:
        return False
    return True


def _client(uri: str, region: str | None) -> Any:
    import boto3

    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(uri).query))
    endpoint = query.get("endpoint_override")
    if endpoint and "://" not in endpoint:
        endpoint = f"{query.get('scheme', 'https')}://{endpoint}"
    # A new session each time: boto3's default one keeps the credentials it first found.
    return boto3.session.Session().client("s3", endpoint_url=endpoint or None, region_name=region or None)


def _status(exc: Exception) -> int | None:
    response = getattr(exc, "response", None) or {}
    return response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def put(uri: str, region: str | None, path: str, data: bytes, if_match: str | None = None) -> str | None:
    """PUT `data`: only if no object is there (if_match None) or only if the object there has the
    ETag `if_match`. Returns the new ETag, or None when the condition failed."""
    from botocore.exceptions import ClientError

    bucket, key = path.split("/", 1)
    condition = {"IfMatch": if_match} if if_match else {"IfNoneMatch": "*"}
    try:
        return str(_client(uri, region).put_object(Bucket=bucket, Key=key, Body=data, **condition)["ETag"])
    except ClientError as exc:
        if _status(exc) in (404, 409, 412):  # 412: the condition failed; 409: a concurrent one is winning
            return None
        if transient(exc):
            raise  # retried by the store's policy (retry.py)
        raise ResultsError(f"cannot write s3://{path}: {exc}") from None


def get(uri: str, region: str | None, path: str) -> tuple[bytes, str] | None:
    """The object's bytes and ETag, or None if there is none."""
    from botocore.exceptions import ClientError

    bucket, key = path.split("/", 1)
    try:
        answer = _client(uri, region).get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if _status(exc) == 404:
            return None
        if transient(exc):
            raise
        raise ResultsError(f"cannot read s3://{path}: {exc}") from None
    return answer["Body"].read(), str(answer["ETag"])


def delete(uri: str, region: str | None, path: str) -> None:
    bucket, key = path.split("/", 1)
    _client(uri, region).delete_object(Bucket=bucket, Key=key)


class S3Backend(ArrowBackend):
    def __init__(self, uri: str, fs: pafs.S3FileSystem, root: str):
        super().__init__(uri, fs, root)
        self.region: str | None = getattr(fs, "region", None) or None
        self.atomic_create = has_boto3()

    def _whole(self, path: str, fill: Fill) -> None:
        with self.fs.open_output_stream(path) as out:  # the object appears whole when the upload completes
            fill(out)

    def make_folder(self, folder: str) -> None:
        pass

    def create(self, path: str, data: bytes) -> bool:
        if not self.atomic_create:
            return super().create(path, data)
        return put(self.uri, self.region, path, data) is not None

    def lock(self, doc: str, lock_file: str) -> Lock:
        return ETagLock(self, doc) if self.atomic_create else super().lock(doc, lock_file)


class ETagLock:
    """An object created only if absent, refreshed only if unchanged since (its ETag); a holder
    that died stops refreshing, and its document's expiry lets the next one take it over."""

    exclusive = True
    frees_at_once = False

    def __init__(self, backend: S3Backend, doc: str):
        self.backend, self.doc = backend, doc
        self._etag: str | None = None

    def _put(self, data: bytes, if_match: str | None = None) -> str | None:
        return put(self.backend.uri, self.backend.region, self.doc, data, if_match=if_match)

    def _get(self) -> tuple[bytes, str] | None:
        return get(self.backend.uri, self.backend.region, self.doc)

    def acquire(self, doc: bytes, expired: Callable[[bytes], bool]) -> Claim:
        self._etag = self._put(doc)
        if self._etag is not None:
            return Claim(True)
        found = self._get()
        if found is not None and found[0] == doc:  # an earlier try of this call was written after all
            self._etag = found[1]
            return Claim(True)
        if found is None or not expired(found[0]):
            return Claim(False, found[0] if found else None)
        self._etag = self._put(doc, if_match=found[1])
        return Claim(self._etag is not None, found[0])

    def refresh(self, doc: bytes) -> Claim:
        etag = self._put(doc, if_match=self._etag) if self._etag else None
        if etag is None:
            found = self._get()
            if found is not None and found[0] == doc:  # an earlier try of this call was written after all
                self._etag = found[1]
                return Claim(True)
            return Claim(False, found[0] if found else None)
        self._etag = etag
        return Claim(True)

    def release(self, mine: Callable[[bytes], bool]) -> None:
        with contextlib.suppress(Exception):  # best effort: an expired lease frees itself
            found = self._get()
            if found and mine(found[0]):
                delete(self.backend.uri, self.backend.region, self.doc)
        self._etag = None
