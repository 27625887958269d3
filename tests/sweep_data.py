"""Real datasets for the readers' tests, made by real sweeps on the local runner."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from grid.cli import main


def retried_dataset(tmp: Path, spec: dict) -> Path:
    """Run `spec`, rerun it with --retry-failed, and write one attempt's file twice (at-least-once)."""
    spec_path = tmp / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    results = tmp / "results"
    argv = ["run", str(spec_path), "--results", str(results), "--runner", "local", "--plain", "--cpu-slots", "2"]
    argv.append("--no-merge")  # one file per attempt, as a sweep leaves them while it runs
    assert main(argv) == 0
    assert main([*argv, "--retry-failed"]) == 0
    first = sorted((results / f"sweep={spec['name']}").glob("*.parquet"))[0]
    shutil.copy(first, first.with_name(first.stem + "-again.parquet"))
    return results
