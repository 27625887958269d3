"""The report page in a real headless Chromium: it loads with every image decoded and no request
blocked. The page itself has no script (its CSP forbids any); the test loads a copy with a probe
script added that marks <body> with what it saw, and checks that the probe does catch a broken
image or an outside request."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from grid.cli import main
from grid.reports.page import CSP

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium)"),
]

SPEC = {
    "name": "page",
    "workload": "sleep",
    "params": {"seconds": 0.02},
    "timeout_s": 30,
    "axes": {"memory_fraction": [None, 0.5], "batch_size": [8, 32], "fail": ["none", "oom"]},
}


def chromium(user_dir: Path, *args: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={user_dir}",
    ]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


# In <head>, so it hears every error: script errors, blocked requests, undecoded images; after load it
# marks <body data-ok>.
PROBE = """
var problems = [];
window.addEventListener('error', function (ev) {
  problems.push('error: ' + (ev.message || ev.target.src || '?'));
}, true);
document.addEventListener('securitypolicyviolation', function (ev) { problems.push('blocked: ' + ev.blockedURI); });
window.addEventListener('load', function () {
  Array.prototype.forEach.call(document.images, function (img) {
    if (!img.complete || img.naturalWidth === 0) { problems.push('image not decoded: ' + img.alt); }
  });
  document.body.setAttribute('data-images', String(document.images.length));
  document.body.setAttribute('data-problems', problems.join(' | '));
  document.body.setAttribute('data-ok', problems.length === 0 ? 'true' : 'false');
});
"""


def probed(html: str, path: Path) -> Path:
    """A copy of the page whose policy lets the probe (and only inline script) run."""
    assert CSP in html and "<script" not in html, "the report page must carry its CSP and no script"
    allowed = CSP.replace("script-src 'none'", "script-src 'unsafe-inline'")
    path.write_text(html.replace(CSP, allowed).replace("</head>", f"<script>{PROBE}</script></head>", 1))
    return path


def body_of(user_dir: Path, page: Path) -> dict[str, str]:
    dom = chromium(
        user_dir, "--dump-dom", probed(page.read_text(), page.with_name("probed-" + page.name)).as_uri()
    ).stdout
    body = re.search(r"<body([^>]*)>", dom)
    assert body, f"no <body> in chromium's DOM dump: {dom[:500]!r}"
    return dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1)))


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    """A report of a real sleep sweep (4 configs ok, 4 oom) whose GPU metrics are filled from the
    measured times, so that plots, tables and failures all appear."""
    tmp = tmp_path_factory.mktemp("page")
    spec = tmp / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    results = tmp / "results"
    assert main(["run", str(spec), "--results", str(results), "--runner", "local", "--plain", "--cpu-slots", "2"]) == 0
    files = list(results.glob("sweep=page/*.parquet"))  # the end of the run merged the rows' files
    assert sum(pq.read_metadata(path).num_rows for path in files) == 8
    for path in files:
        table = pq.read_table(path)
        rows = table.to_pylist()
        for row in rows:
            if row["status"] == "ok":
                row.update(
                    steady_epoch_s=row["first_epoch_s"] * 40,
                    images_per_s=row["batch_size"] / row["first_epoch_s"],
                    gpu_mem_peak_mib=16000 * (row["memory_fraction"] or 1.0),
                    framework_peak_mib=800.0,
                )
        pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
    assert main(["report", str(results), "--out", str(tmp / "report")]) == 0
    return tmp / "report" / "index.html"


def test_page_loads_clean_and_renders(page, tmp_path):
    body = body_of(tmp_path / "profile", page)
    assert body["data-ok"] == "true", body.get("data-problems")
    assert body["data-images"] == "4" == str(len(list(page.parent.glob("*.png"))))
    shot = tmp_path / "shot.png"
    chromium(tmp_path / "profile", f"--screenshot={shot}", "--window-size=1400,2000", page.as_uri())
    header = shot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", header[16:24]) == (1400, 2000)
    assert shot.stat().st_size > 100_000  # tables and plots, not a blank page


def test_page_check_catches_broken_images_and_outside_requests(page, tmp_path):
    html = page.read_text()
    broken = tmp_path / "broken.html"
    broken.write_text(re.sub(r'src="data:image/png;base64,[^"]+"', 'src="data:image/png;base64,AAAA"', html, count=1))
    body = body_of(tmp_path / "profile", broken)
    assert body["data-ok"] == "false" and "image not decoded" in body["data-problems"]
    outside = tmp_path / "outside.html"
    outside.write_text(html.replace("<h1>", '<img alt="x" src="https://example.com/x.png"><h1>', 1))
    body = body_of(tmp_path / "profile", outside)
    assert body["data-ok"] == "false" and "blocked: https://example.com/x.png" in body["data-problems"]


def test_a_page_with_a_verdict_on_top_loads_clean(page, tmp_path):
    """`grid report --verdict`: the verdict of `grid compare --json` (this run against itself as a
    history of one) above the sweep, its history plot decoded inside the page like the others."""
    results = page.parent.parent / "results"
    verdict = tmp_path / "verdict.json"
    compared = ["compare", str(results), str(results), "--json", str(verdict), "--out", str(tmp_path / "history")]
    assert main(compared) in (0, 6)
    assert main(["report", str(results), "--out", str(tmp_path / "report"), "--verdict", str(verdict)]) == 0
    with_verdict = tmp_path / "report" / "index.html"
    assert 'id="verdict"' in with_verdict.read_text()
    body = body_of(tmp_path / "profile", with_verdict)
    assert body["data-ok"] == "true", body.get("data-problems")
    assert body["data-images"] == "5"  # the sweep's 4 plots and the history plot
