"""What runs inside a trial's process: gpu-grid's built-in workloads.

Each built-in is an ordinary trial target, a function `run(config) -> dict` called under the trial
bootstrap, exactly like a user's `function: pkg.module:train` (tasks/site/gridtrial); grid knows
them from tasks/workloads.yaml, as data, and never imports this package. Each also runs alone:
`python -m tasks.keras_tiny trial.json`. Frameworks are imported only inside a trial's process,
after the bootstrap has set the backend and the memory cap.
"""

from __future__ import annotations

import os
import sys

SITE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "site")
if SITE not in sys.path:  # a workload run by hand: the bootstrap and the helper live there
    sys.path.insert(0, SITE)


def main(run) -> None:
    """`python -m tasks.<workload> trial.json`: run one trial by hand, under the bootstrap."""
    if len(sys.argv) != 2:
        sys.exit(f"usage: python -m {run.__module__} TRIAL_JSON")
    from gridtrial.runner import run_function

    sys.exit(run_function(run, sys.argv[1]))
