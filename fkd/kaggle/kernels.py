"""`fkd kaggle push/status/logs/output`: kernels pushed in order, watched, their runs fetched."""
import re
import shutil
import subprocess
import time
from pathlib import Path

from fkd.core.atomic import atomic_path
from fkd.core.errors import FkdError
from fkd.kaggle.program import call, require_kaggle

STATES = ("queued", "running", "complete", "error", "cancelled", "unknown")


def parse_status(text: str):
    """(state, raw) from `kaggle kernels status` output: 'alice/x has status "KernelWorkerStatus.RUNNING"'.

    state is one of STATES, matched case-insensitively on the status word.
    """
    match = re.search(r'has status "([^"]*)"', text)
    raw = match.group(1) if match else text.strip()
    word = raw.split(".")[-1].strip().lower()
    if not match:  # another wording: look for a known word anywhere
        found = re.search(r"\b(complete|running|queued|new_script|error|cancel\w*)\b", text, re.IGNORECASE)
        word = found.group(1).lower() if found else ""
    if word.startswith("cancel"):
        return "cancelled", raw
    if word in ("queued", "new_script", "new"):
        return "queued", raw
    if word in ("running", "complete", "error"):
        return word, raw
    return "unknown", raw


def kernel_status(kernel_id, program=None):
    output = call(["kernels", "status", kernel_id], program, echo=False)
    state, raw = parse_status(output)
    failure = re.search(r'Failure message: "(.*)"', output)
    return state, raw, failure.group(1) if failure else ""


def _kernels(args):
    from fkd.kaggle.bundle import read_manifest
    kernels = read_manifest(args.kernel_dir)
    if getattr(args, "only", None):
        wanted = set(args.only)
        kernels = [k for k in kernels if Path(k["dir"]).name in wanted or k["id"] in wanted
                   or k["role"] in wanted]
        if not kernels:
            raise FkdError(f"--only {' '.join(args.only)} matches none of the kernels", path=args.kernel_dir)
    return kernels


def wait_until_complete(kernels, program, poll: float, first_delay: float) -> None:
    """Poll `kaggle kernels status` until every kernel is complete; FkdError if one fails."""
    time.sleep(first_delay)  # a just-pushed kernel may still report its previous version for a moment
    pending = {k["id"] for k in kernels}
    last = {}
    while pending:
        for kernel_id in sorted(pending):
            state, raw, failure = kernel_status(kernel_id, program)
            if last.get(kernel_id) != state:
                print(f"{kernel_id}: {state}", flush=True)
                last[kernel_id] = state
            if state == "complete":
                pending.discard(kernel_id)
            elif state in ("error", "cancelled"):
                raise FkdError(f"kernel {kernel_id} ended with status {state}"
                               + (f": {failure}" if failure else "") + " - the ensemble was not pushed")
        if pending:
            time.sleep(poll)


def cmd_push(args):
    program = require_kaggle()
    from fkd.kaggle.metadata import is_placeholder
    kernels = _kernels(args)
    for k in kernels:
        if is_placeholder(k["id"]):
            raise FkdError(f"key 'id': {k['id']!r} has no Kaggle username: rebuild with "
                           "KAGGLE_USERNAME=<you> make kernel (or fkd kernel --username)",
                           path=Path(k["dir"]) / "kernel-metadata.json")
    extra = (["--accelerator", args.accelerator] if args.accelerator else []) + \
            (["-t", args.timeout] if args.timeout else [])
    pushed = []
    for k in kernels:
        if k["role"] == "ensemble":
            folds = [p for p in pushed if p["role"] == "fold"]
            if folds and not args.no_wait:
                print(f"waiting for {len(folds)} fold kernels to complete before pushing the ensemble "
                      f"(checks every {args.poll:g} s; Ctrl-C stops, push it later with --only ensemble)",
                      flush=True)
                wait_until_complete(folds, program, args.poll, first_delay=args.poll)
        output = call(["kernels", "push", "-p", k["dir"], *extra], program)
        if "kernel push error" in output.lower():
            raise FkdError(f"pushing {k['id']} failed: {output.strip().splitlines()[-1]}", path=k["dir"])
        pushed.append(k)
    print(f"pushed {len(pushed)} kernel(s); follow with: fkd kaggle status --kernel-dir {args.kernel_dir}")
    return 0


def cmd_status(args):
    program = require_kaggle()
    kernels = _kernels(args)
    while True:
        states = []
        for k in kernels:
            state, raw, failure = kernel_status(k["id"], program)
            states.append(state)
            print(f"{Path(k['dir']).name if k['role'] != 'single' else 'kernel':<10} {k['id']:<50} {state}"
                  + (f"  ({raw})" if state == "unknown" else "") + (f"  failure: {failure}" if failure else ""),
                  flush=True)
        if not args.wait or not any(s in ("queued", "running") for s in states):
            break
        time.sleep(args.poll)
    return 1 if any(s in ("error", "cancelled") for s in states) else 0


def cmd_logs(args):
    program = require_kaggle()
    for k in _kernels(args):
        argv = ["kernels", "logs", k["id"]] + (["--follow"] if args.follow else [])
        print(f"$ kaggle {' '.join(argv)}", flush=True)
        status = subprocess.run([program, *argv]).returncode  # streamed: a log carries no token
        if status:
            raise FkdError(f"`kaggle {' '.join(argv)}` failed with exit status {status}")
    return 0


def _copy_tree(source: Path, target: Path) -> int:
    """Copy files one by one, each atomically (a half-copied run never looks finished)."""
    count = 0
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        with atomic_path(target / path.relative_to(source)) as tmp:
            shutil.copyfile(path, tmp)
        count += 1
    return count


def download_kernel_output(kernel_id, staging: Path, program) -> None:
    """`kaggle kernels output ID -p STAGING -o`, page after page."""
    token = None
    for _ in range(1000):
        argv = ["kernels", "output", kernel_id, "-p", staging, "-o"] + (["--page-token", token] if token else [])
        output = call(argv, program)
        found = re.search(r"Next page token:\s*(\S+)", output)
        if not found:
            return
        token = found.group(1)


def _fetch_runs(k, kernel_dir, runs_dir, program) -> list:
    """Download one kernel's output to <kernel-dir>/output/<slug>/ and copy its runs/* into runs_dir."""
    staging = Path(kernel_dir) / "output" / k["id"].split("/")[1]
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    download_kernel_output(k["id"], staging, program)
    runs = sorted(p for p in (staging / "runs").glob("*") if p.is_dir()) if (staging / "runs").is_dir() else []
    for run in runs:
        n = _copy_tree(run, runs_dir / run.name)
        print(f"{runs_dir / run.name}: {n} files from {k['id']}")
    if (staging / "submission.csv").is_file():
        print(f"{k['id']} made {staging / 'submission.csv'}")
    if not runs:
        print(f"no runs/ in the output of {k['id']} (is it complete? fkd kaggle status)")
    return [runs_dir / run.name for run in runs]


def cmd_output(args):
    """Runs of the kernel(s) into --runs-dir. Split layout: the ensemble's assembled run, else the folds'."""
    program = require_kaggle()
    runs_dir = Path(args.runs_dir)
    kernels = _kernels(args)
    ensemble = [k for k in kernels if k["role"] == "ensemble"]
    copied = []
    if ensemble and not args.only:
        copied = _fetch_runs(ensemble[0], args.kernel_dir, runs_dir, program)
        if not copied:
            print("the ensemble kernel left no run: fetching the fold kernels' checkpoints instead")
            for k in kernels:
                if k["role"] == "fold":
                    copied += _fetch_runs(k, args.kernel_dir, runs_dir, program)
            if copied:
                print("assemble them (no training: every fold exists) with: fkd cv --config <the config> "
                      f"--name {copied[0].name} --runs-dir {runs_dir}")
    else:
        for k in kernels:
            copied += _fetch_runs(k, args.kernel_dir, runs_dir, program)
    if copied:
        unique = sorted({str(p) for p in copied})
        print("blend locally with: make submit RUNS=\"" + " ".join(unique) + "\"")
    return 0
