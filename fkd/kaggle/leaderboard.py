"""`fkd kaggle submit/sync`: a checked submission to the leaderboard and its scores back in the ledger."""
import csv
import io
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

from fkd.core.errors import FkdError
from fkd.kaggle import ledger
from fkd.kaggle.program import call, require_kaggle


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
    from fkd.data.competition import load_lookup
    from fkd.submit.submission import check_submission
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
