"""`fkd kaggle ...`: thin wrappers over the `kaggle` program (kaggle==2.2.5), run as a subprocess.

    fkd kaggle push     --kernel-dir build/kernel    kaggle kernels push -p DIR (fold kernels, then the ensemble)
    fkd kaggle status   --kernel-dir build/kernel    kaggle kernels status OWNER/SLUG
    fkd kaggle logs     --kernel-dir build/kernel    kaggle kernels logs OWNER/SLUG [--follow]
    fkd kaggle output   --kernel-dir build/kernel --runs-dir runs
                                                     kaggle kernels output OWNER/SLUG -p DIR; runs/* -> runs/
    fkd kaggle download --out data                   kaggle competitions download facial-keypoints-detection -p data
    fkd kaggle submit   --file F --message M         kaggle competitions submit facial-keypoints-detection -f F -m M
                                                     + a row in submissions/ledger.csv
    fkd kaggle sync                                  kaggle competitions submissions facial-keypoints-detection --csv
                                                     -> public/private scores into the ledger

Each command first checks that the `kaggle` program exists and that a token is in one of the places
kaggle 2.2.5 reads, and otherwise stops with one line saying what to do. No token value is ever
printed: the kaggle program's output is relayed with any token value masked.
"""
import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

from fkd import ledger
from fkd.atomic import atomic_path
from fkd.errors import FkdError

COMPETITION = "facial-keypoints-detection"
RULES_URL = f"https://www.kaggle.com/competitions/{COMPETITION}/rules"
TOKEN_HELP = ("no Kaggle token: run `kaggle auth login`, or create an API token at "
              "https://www.kaggle.com/settings/api and save it to ~/.kaggle/access_token "
              "(or export KAGGLE_API_TOKEN), or put a legacy kaggle.json in ~/.kaggle/ "
              "(or $KAGGLE_CONFIG_DIR) with chmod 600")
PROGRAM_HELP = ("the `kaggle` program was not found on PATH: `make install` (pip install kaggle==2.2.5 six) "
                "and run through .venv/bin/python, or activate .venv")
VENV_BIN = Path(sys.executable).parent          # .venv/bin when run as .venv/bin/python -m fkd
COMPETITION_FILES = ("training", "test")          # .zip or .csv
PLAIN_FILES = ("IdLookupTable.csv", "SampleSubmission.csv")


# ---------------------------------------------------------------- program and token

def find_program():
    """$FKD_KAGGLE_PROGRAM, else `kaggle` on PATH, else beside this Python (a venv run without activation)."""
    explicit = os.environ.get("FKD_KAGGLE_PROGRAM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    found = shutil.which("kaggle")
    if found:
        return found
    beside = VENV_BIN / "kaggle"
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def _home() -> Path:
    return Path(os.path.expanduser("~"))


def _config_dir() -> Path:
    """Where kaggle 2.2.5 looks for kaggle.json (KaggleApi.config_dir)."""
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        return Path(os.environ["KAGGLE_CONFIG_DIR"])
    legacy = _home() / ".kaggle"
    if sys.platform.startswith("linux") and not legacy.exists():
        return Path(os.environ.get("XDG_CONFIG_HOME") or _home() / ".config") / "kaggle"
    return legacy


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return ""


def _kaggle_json() -> dict:
    try:
        value = json.loads(_read(_config_dir() / "kaggle.json") or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def token_source():
    """Where the kaggle program will find credentials (a description, never the value), or None.

    The places kaggle 2.2.5 reads (KaggleApi.authenticate, kagglesdk.get_access_token_from_env):
    $KAGGLE_API_TOKEN (the token or a file), ~/.kaggle/access_token(.txt), $KAGGLE_USERNAME +
    $KAGGLE_KEY, kaggle.json in $KAGGLE_CONFIG_DIR or ~/.kaggle (or ~/.config/kaggle), the OAuth
    credentials of `kaggle auth login` (~/.kaggle/credentials.json), and $KAGGLE_API_V1_TOKEN inside
    a Kaggle notebook.
    """
    env = os.environ
    if env.get("KAGGLE_API_TOKEN"):
        return "$KAGGLE_API_TOKEN"
    for name in ("access_token", "access_token.txt"):
        if _read(_home() / ".kaggle" / name):
            return f"~/.kaggle/{name}"
    config = _kaggle_json()
    username = env.get("KAGGLE_USERNAME") or config.get("username")
    key = env.get("KAGGLE_KEY") or config.get("key")
    if username and key:
        return "$KAGGLE_USERNAME/$KAGGLE_KEY" if env.get("KAGGLE_KEY") else str(_config_dir() / "kaggle.json")
    try:
        oauth = json.loads(_read(_home() / ".kaggle" / "credentials.json") or "{}")
    except ValueError:
        oauth = {}
    if isinstance(oauth, dict) and oauth.get("refresh_token"):
        return "~/.kaggle/credentials.json (kaggle auth login)"
    notebook_token = env.get("KAGGLE_API_V1_TOKEN")
    if notebook_token and Path(notebook_token).is_file():
        return "$KAGGLE_API_V1_TOKEN"
    return None


def _secrets() -> list:
    """Token values that may exist here, to be masked in anything relayed from the kaggle program."""
    values = [os.environ.get("KAGGLE_KEY", ""), os.environ.get("KAGGLE_API_TOKEN", ""),
              str(_kaggle_json().get("key", ""))]
    for name in ("access_token", "access_token.txt"):
        values.append(_read(_home() / ".kaggle" / name))
    token = os.environ.get("KAGGLE_API_TOKEN", "")
    if token and Path(token).is_file():
        values.append(_read(Path(token)))
    try:
        oauth = json.loads(_read(_home() / ".kaggle" / "credentials.json") or "{}")
        values += [str(oauth.get("refresh_token", "")), str(oauth.get("access_token", ""))]
    except (ValueError, AttributeError):
        pass
    return sorted({v for v in values if len(v) >= 6}, key=len, reverse=True)


def redact(text: str) -> str:
    for secret in _secrets():
        text = text.replace(secret, "***")
    return text


def require_kaggle() -> str:
    """The kaggle program's path; FkdError (one line) without the program or without a token."""
    program = find_program()
    if program is None:
        raise FkdError(PROGRAM_HELP)
    if token_source() is None:
        raise FkdError(TOKEN_HELP)
    return program


def call(args, program=None, check=True, echo=True) -> str:
    """Run `kaggle ARGS`, return its output (stdout + stderr, token values masked)."""
    program = program or require_kaggle()
    args = [str(a) for a in args]
    shown = "kaggle " + " ".join(args)
    print(f"$ {shown}", flush=True)
    try:
        result = subprocess.run([program, *args], capture_output=True, text=True)
    except OSError as error:
        raise FkdError(f"could not run {program}: {error.strerror}") from None
    output = redact((result.stdout or "") + (result.stderr or ""))
    if echo and output.strip():
        print(output.rstrip(), flush=True)
    if "Authentication required" in output or ("401" in output and "Unauthorized" in output):
        raise FkdError(f"`{shown}`: the token was refused. " + TOKEN_HELP.replace("no Kaggle token: ", ""))
    if check and result.returncode != 0:
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        last = lines[-1] if lines else "no output"
        if "403" in output and args[:1] == ["competitions"]:
            last += f" (accept the competition rules first: {RULES_URL})"
        raise FkdError(f"`{shown}` failed with exit status {result.returncode}: {last}")
    return output


# ---------------------------------------------------------------- kernels

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
    from fkd.kernel import read_manifest
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
    from fkd.kernel import is_placeholder
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


# ---------------------------------------------------------------- competition files

def _safe_extract(archive: zipfile.ZipFile, out: Path) -> list:
    names = []
    root = out.resolve()
    for member in archive.infolist():
        target = (out / member.filename).resolve()
        if root != target and root not in target.parents:
            raise FkdError(f"refusing to extract {member.filename!r}: outside {out}")
        names.append(member.filename)
    archive.extractall(out)
    return names


def verify_competition(out: Path) -> list:
    """The competition files present in `out`; FkdError naming the first one missing or unreadable."""
    present = []
    for stem in COMPETITION_FILES:
        candidates = [out / f"{stem}.zip", out / f"{stem}.csv"]
        found = [p for p in candidates if p.is_file()]
        if not found:
            raise FkdError(f"missing {stem}.zip (or {stem}.csv) after the download", path=out)
        if found[0].suffix == ".zip":
            try:
                with zipfile.ZipFile(found[0]) as archive:
                    bad = archive.testzip()
                    if bad or not any(n.endswith(".csv") for n in archive.namelist()):
                        raise FkdError(f"damaged or empty archive ({bad or 'no .csv inside'})", path=found[0])
            except zipfile.BadZipFile:
                raise FkdError("not a readable zip", path=found[0]) from None
        present.append(found[0].name)
    for name in PLAIN_FILES:
        if not (out / name).is_file():
            raise FkdError(f"missing {name} after the download", path=out)
        present.append(name)
    return present


def cmd_download(args):
    out = Path(args.out)
    if not args.force:
        try:
            files = verify_competition(out)
            print(f"{out}: already holds {', '.join(files)} (--force downloads again)")
            return 0
        except FkdError:
            pass
    program = require_kaggle()
    out.mkdir(parents=True, exist_ok=True)
    call(["competitions", "download", args.competition, "-p", out] + (["-o"] if args.force else []), program)
    archive_path = out / f"{args.competition}.zip"
    if archive_path.is_file():
        try:
            with zipfile.ZipFile(archive_path) as archive:
                names = _safe_extract(archive, out)
        except zipfile.BadZipFile:
            raise FkdError("the download is not a readable zip", path=archive_path) from None
        print(f"unzipped {archive_path}: {', '.join(names)}")
        archive_path.unlink()
    files = verify_competition(out)
    print(f"{out}: {', '.join(files)}")
    return 0


# ---------------------------------------------------------------- leaderboard

def read_sidecar(file: Path) -> dict:
    """{"runs": [...], "oof_rmse": float} written by `fkd submit` beside the file (<file>.json)."""
    for candidate in (file.with_name(file.name + ".json"), file.with_suffix(".json")):
        if candidate.is_file():
            try:
                value = json.loads(candidate.read_text())
            except ValueError:
                raise FkdError("not valid JSON", path=candidate) from None
            return value if isinstance(value, dict) else {}
    return {}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def cmd_submit(args):
    file = Path(args.file)
    if not file.is_file():
        raise FkdError("no such file", path=file)
    program = require_kaggle()
    if not args.no_check:
        _check_before_submit(file, args.lookup)
    side = read_sidecar(file)
    sent = _now()
    output = call(["competitions", "submit", args.competition, "-f", file, "-m", args.message], program)
    ref = re.search(r"Submission ref:\s*(\d+)", output)
    oof = side.get("oof_rmse")
    row = {"submitted_utc": sent, "file": str(file), "runs": side.get("runs") or [],
           "oof_rmse": float(oof) if isinstance(oof, (int, float)) else "", "message": args.message,
           "status": "pending", "ref": ref.group(1) if ref else ""}
    path = ledger.append_row(row, args.ledger)
    print(f"{path}: row added ({file.name}, CV {row['oof_rmse'] or 'unknown'}); "
          "scores arrive with `fkd kaggle sync`")
    return 0


def _check_before_submit(file: Path, lookup) -> None:
    lookup = Path(lookup)
    if not lookup.is_file():
        print(f"note: {lookup} not found, the file is not checked before submitting (--lookup)")
        return
    from fkd.data import load_lookup
    from fkd.submission import check_submission
    check_submission(file, load_lookup(lookup))


def _parse_time(text: str):
    text = (text or "").strip()
    if not text or text == "None":
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def parse_submissions(text: str) -> list:
    """Rows of `kaggle competitions submissions COMP --csv`: ref, fileName, date, description, status, scores."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("ref,")), None)
    if start is None:
        return []
    rows = []
    for row in csv.DictReader(io.StringIO("\n".join(lines[start:]))):
        if not row.get("ref"):
            continue
        status = (row.get("status") or "").split(".")[-1].lower()
        rows.append({"ref": row["ref"].strip(), "fileName": (row.get("fileName") or "").strip(),
                     "date": _parse_time(row.get("date")), "description": (row.get("description") or "").strip(),
                     "status": status, "publicScore": _score(row.get("publicScore")),
                     "privateScore": _score(row.get("privateScore"))})
    return rows


def _score(text):
    value = ledger.as_float((text or "").strip())
    return "" if value is None else repr(value)


def match_rows(rows, remote, window=timedelta(days=1)) -> int:
    """Fill ref/status/scores of ledger rows from Kaggle's list; returns how many rows changed.

    A row with a ref matches that submission; otherwise the unclaimed submission with the same file
    name (and, preferably, the same description) closest in time to the row, within `window`.
    """
    by_ref = {r["ref"]: r for r in remote}
    claimed = {row["ref"] for row in rows if row.get("ref")}
    changed = 0
    for row in rows:
        hit = by_ref.get(row.get("ref") or "")
        if hit is None and not row.get("ref"):
            name, sent = Path(row["file"]).name, _parse_time(row["submitted_utc"])
            options = [r for r in remote if r["ref"] not in claimed and r["fileName"] == name]
            same = [r for r in options if r["description"] == row["message"].strip()]
            options = same or options

            def gap(r):
                return abs(r["date"] - sent) if r["date"] and sent else window

            options = [r for r in options if gap(r) <= window]
            if options:
                hit = min(options, key=gap)
                claimed.add(hit["ref"])
        if hit is None:
            continue
        update = {"ref": hit["ref"], "status": hit["status"], "public_score": hit["publicScore"],
                  "private_score": hit["privateScore"]}
        if any(str(row.get(k, "")) != str(v) for k, v in update.items()):
            row.update(update)
            changed += 1
    return changed


def cmd_sync(args):
    program = require_kaggle()
    rows = ledger.read_ledger(args.ledger)
    if not rows:
        print(f"{args.ledger}: no submissions to sync yet")
        return 0
    output = call(["competitions", "submissions", args.competition, "--csv"], program, echo=False)
    remote = parse_submissions(output)
    changed = match_rows(rows, remote)
    if changed:
        ledger.write_ledger(rows, args.ledger)
    unmatched = sum(1 for r in rows if not r.get("ref"))
    print(f"{args.ledger}: {changed} row(s) updated from {len(remote)} Kaggle submissions"
          + (f"; {unmatched} row(s) not found on Kaggle" if unmatched else ""))
    print(ledger.format_table(rows))
    return 0


# ---------------------------------------------------------------- command

def add_arguments(parser):
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    class Sub:  # each action's --help opens with its help line
        @staticmethod
        def add_parser(name, help):
            return actions.add_parser(name, help=help, description=help)

    sub = Sub()

    def kernel_dir(p):
        p.add_argument("--kernel-dir", default="build/kernel", help="bundle folder (default %(default)s)")
        p.add_argument("--only", nargs="+", metavar="KERNEL",
                       help="only these kernels (folder name like fold0/ensemble, role, or id)")

    p = sub.add_parser("push", help="kaggle kernels push -p DIR (fold kernels first, the ensemble once they finish)")
    kernel_dir(p)
    p.add_argument("--accelerator", help="kaggle's --accelerator, e.g. NvidiaTeslaT4 (GPU T4 x2)")
    p.add_argument("--timeout", type=int, help="kernel run-time limit in seconds")
    p.add_argument("--no-wait", action="store_true",
                   help="push the ensemble at once (it then blends the fold kernels' previous outputs)")
    p.add_argument("--poll", type=float, default=60.0, help="seconds between status checks (default 60)")
    p.set_defaults(func=cmd_push)

    p = sub.add_parser("status", help="kaggle kernels status OWNER/SLUG for each kernel")
    kernel_dir(p)
    p.add_argument("--wait", action="store_true", help="repeat until no kernel is queued or running")
    p.add_argument("--poll", type=float, default=60.0, help="seconds between checks with --wait")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("logs", help="kaggle kernels logs OWNER/SLUG")
    kernel_dir(p)
    p.add_argument("--follow", action="store_true", help="stream the log of a running kernel")
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("output", help="kaggle kernels output OWNER/SLUG; copy its runs/ into --runs-dir")
    kernel_dir(p)
    p.add_argument("--runs-dir", default="runs", help="where the kernels' runs go (default %(default)s)")
    p.set_defaults(func=cmd_output)

    p = sub.add_parser("download", help="kaggle competitions download; unzip; check the files")
    p.add_argument("--out", default="data", help="competition folder (default %(default)s)")
    p.add_argument("--force", action="store_true", help="download even if the files are there")
    p.add_argument("--competition", default=COMPETITION, help=argparse_suppress())
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("submit", help="kaggle competitions submit + a ledger row")
    p.add_argument("--file", required=True, help="submission csv (its <file>.json sidecar names the runs)")
    p.add_argument("--message", "-m", required=True, help="submission description")
    p.add_argument("--ledger", default=str(ledger.DEFAULT_LEDGER), help="ledger file (default %(default)s)")
    p.add_argument("--lookup", default="data/IdLookupTable.csv",
                   help="check the file against this lookup first (default %(default)s)")
    p.add_argument("--no-check", action="store_true", help="submit without checking the file")
    p.add_argument("--competition", default=COMPETITION, help=argparse_suppress())
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("sync", help="read public/private scores back into the ledger")
    p.add_argument("--ledger", default=str(ledger.DEFAULT_LEDGER), help="ledger file (default %(default)s)")
    p.add_argument("--competition", default=COMPETITION, help=argparse_suppress())
    p.set_defaults(func=cmd_sync)


def argparse_suppress():
    import argparse
    return argparse.SUPPRESS


def run(args):
    return args.func(args)
