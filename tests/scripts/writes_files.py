"""A user script that writes files: its own output into the folder given by --out (or
$GRID_TRIAL_DIR), and, with --shared, a file in its working folder, as a checkpoint saved to a
relative path would. Knows nothing of gpu-grid beyond the variable."""

import argparse
import os
from pathlib import Path

p = argparse.ArgumentParser()
p.add_argument("--value", required=True)
p.add_argument("--out", default=None)
p.add_argument("--shared", action="store_true")
p.add_argument("--nothing", action="store_true")
p.add_argument("--fail", action="store_true")
args = p.parse_args()
if not args.nothing:
    Path(os.environ["GRID_TRIAL_DIR"], "env.txt").write_text(args.value)
    if args.out:
        Path(args.out, "logs").mkdir()
        Path(args.out, "logs", "arg.txt").write_text(args.value)
if args.shared:
    Path("checkpoint.txt").write_text(args.value)
if args.fail:
    raise SystemExit(f"failed after writing {args.value}")
print("done", args.value)
