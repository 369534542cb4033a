"""Which fkd source a run or a kernel came from: the git commit, "+local-changes" when fkd/ differs from
it, "unknown" without git; $FKD_COMMIT wins (the kernel sets it from the commit it was built at)."""
import os
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def source_commit() -> str:
    if os.environ.get("FKD_COMMIT"):
        return os.environ["FKD_COMMIT"]
    try:
        head = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", "fkd"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + ("+local-changes" if dirty.stdout.strip() else "")
