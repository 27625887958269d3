"""S3's conditional create (If-None-Match: *), which pyarrow's S3 filesystem cannot send: an
attempt's row written once however many writers race (the driver's `lost` rows)."""

from __future__ import annotations

import urllib.parse

from grid.errors import ResultsError


def has_boto3() -> bool:
    try:
        import boto3  # noqa: F401
    except ImportError:
        return False
    return True


def put_if_absent(uri: str, region: str, path: str, data: bytes) -> bool:
    """PUT with If-None-Match: * (S3 answers 412 if the key exists). Endpoint and scheme come from
    the URI's query as pyarrow reads them; credentials and anything unset from the standard chain."""
    import boto3
    from botocore.exceptions import ClientError

    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(uri).query))
    endpoint = query.get("endpoint_override")
    if endpoint and "://" not in endpoint:
        endpoint = f"{query.get('scheme', 'https')}://{endpoint}"
    # A new session each time: boto3's default one keeps the credentials it first found.
    client = boto3.session.Session().client("s3", endpoint_url=endpoint or None, region_name=region or None)
    bucket, key = path.split("/", 1)
    try:
        client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status in (409, 412):  # 412: it exists; 409: a concurrent conditional write is winning
            return False
        raise ResultsError(f"cannot write s3://{path}: {exc}") from None
    return True
