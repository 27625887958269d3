"""S3's conditional requests, which pyarrow's S3 filesystem cannot send: a create that fails when
the key exists (If-None-Match: *: an attempt's row written once however many writers race, an
attempt number claimed once) and a replace that fails when someone else replaced it first
(If-Match: the sweep's lease). Endpoint and scheme come from the results URI's query as pyarrow
reads them; credentials and anything unset from the standard AWS chain."""

from __future__ import annotations

import urllib.parse
from typing import Any

from grid.errors import ResultsError


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
        raise ResultsError(f"cannot write s3://{path}: {exc}") from None


def put_if_absent(uri: str, region: str | None, path: str, data: bytes) -> bool:
    return put(uri, region, path, data) is not None


def get(uri: str, region: str | None, path: str) -> tuple[bytes, str] | None:
    """The object's bytes and ETag, or None if there is none."""
    from botocore.exceptions import ClientError

    bucket, key = path.split("/", 1)
    try:
        answer = _client(uri, region).get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if _status(exc) == 404:
            return None
        raise ResultsError(f"cannot read s3://{path}: {exc}") from None
    return answer["Body"].read(), str(answer["ETag"])


def delete(uri: str, region: str | None, path: str) -> None:
    bucket, key = path.split("/", 1)
    _client(uri, region).delete_object(Bucket=bucket, Key=key)
