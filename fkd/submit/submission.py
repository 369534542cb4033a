"""Per-image predictions + IdLookupTable -> RowId,Location; written once, never over another file; checked."""
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from fkd.core.atomic import atomic_path, write_text
from fkd.core.errors import FkdError, row_label
from fkd.core.keypoints import COLUMNS, SIZE

HEADER = ["RowId", "Location"]
LOW, HIGH = 0.0, float(SIZE)


def submission_frame(predictions, image_ids, lookup: pd.DataFrame) -> pd.DataFrame:
    """RowId,Location for every lookup row, in the lookup's order, clipped to [0, 96]."""
    predictions = np.asarray(predictions, dtype=np.float64)
    position = pd.Series(np.arange(len(image_ids)), index=np.asarray(image_ids))
    missing = ~lookup["ImageId"].isin(position.index)
    if missing.any():
        raise FkdError(f"no prediction for ImageId {lookup['ImageId'][missing].iloc[0]} "
                       f"({missing.sum()} lookup rows without one)")
    rows = position[lookup["ImageId"]].to_numpy()
    columns = lookup["FeatureName"].map({name: j for j, name in enumerate(COLUMNS)}).to_numpy()
    values = predictions[rows, columns]
    if not np.isfinite(values).all():
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        raise FkdError(f"prediction for RowId {lookup['RowId'].iloc[bad]} is not finite")
    return pd.DataFrame({"RowId": lookup["RowId"].to_numpy(), "Location": np.clip(values, LOW, HIGH)})


def check_frame(frame: pd.DataFrame, lookup: pd.DataFrame, path="submission") -> None:
    """Every lookup RowId exactly once and in order; each Location a number in [0, 96]."""
    if list(frame.columns) != HEADER:
        raise FkdError(f"header is {','.join(map(str, frame.columns))}, expected RowId,Location",
                       path=path, row="header")
    row_ids = pd.to_numeric(frame["RowId"], errors="coerce")
    not_int = row_ids.isna() | (row_ids != row_ids.round())
    if not_int.any():
        row = int(np.flatnonzero(not_int.to_numpy())[0])
        raise FkdError(f"RowId {frame['RowId'].iloc[row]!r} is not an integer", path=path,
                       row=row_label(row), column="RowId")
    duplicated = row_ids.duplicated()
    if duplicated.any():
        row = int(np.flatnonzero(duplicated.to_numpy())[0])
        raise FkdError(f"RowId {int(row_ids.iloc[row])} appears twice", path=path, row=row_label(row), column="RowId")
    expected = lookup["RowId"].to_numpy()
    present = set(row_ids.astype(np.int64).tolist())
    missing = [r for r in expected if r not in present]
    if missing:
        raise FkdError(f"{len(missing)} RowIds missing, first {missing[0]} "
                       f"(the lookup has {len(expected)} rows)", path=path, column="RowId")
    extra = ~row_ids.isin(expected)
    if extra.any():
        row = int(np.flatnonzero(extra.to_numpy())[0])
        raise FkdError(f"RowId {int(row_ids.iloc[row])} is not in the lookup table", path=path,
                       row=row_label(row), column="RowId")
    out_of_order = row_ids.to_numpy(dtype=np.int64) != expected
    if out_of_order.any():
        row = int(np.flatnonzero(out_of_order)[0])
        raise FkdError(f"RowId {int(row_ids.iloc[row])} out of order: expected {expected[row]}",
                       path=path, row=row_label(row), column="RowId")
    text = frame["Location"].astype(str).str.strip()
    location = pd.to_numeric(text.where(~text.isin(["", "nan", "NaN", "<NA>", "None"])), errors="coerce")
    for problem, bad in (
        ("is missing or not a number", location.isna()),
        ("is not finite", ~np.isfinite(location.fillna(0.0))),
        (f"is outside [{LOW:g}, {HIGH:g}]", (location < LOW) | (location > HIGH)),
    ):
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise FkdError(f"{frame['Location'].iloc[row]!r} {problem}", path=path,
                           row=row_label(row), column="Location")


def check_submission(path, lookup: pd.DataFrame) -> pd.DataFrame:
    """Validate a submission file and return it (RowId, Location as text); raises FkdError naming the
    file, row and column."""
    path = Path(path)
    if not path.is_file():
        raise FkdError("no such file", path=path)
    raw = path.read_bytes()
    if not raw.strip():
        raise FkdError("is empty: a submission starts with the header RowId,Location", path=path)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise FkdError(f"is not a text file (byte {error.start} is not UTF-8): a submission is a csv of "
                       "RowId,Location", path=path) from None
    if b"\0" in raw:
        raise FkdError("is not a text file (it holds NUL bytes): a submission is a csv of RowId,Location",
                       path=path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise FkdError(f"is not a readable csv ({str(error).splitlines()[0]})", path=path) from None
    check_frame(frame, lookup, path)
    return frame


def write_submission(frame: pd.DataFrame, name: str, out_dir="submissions", lookup=None, meta=None) -> Path:
    """Write submissions/<UTC time>-<name>.csv (never over an existing file) and <file>.json beside it
    (name, runs, OOF RMSE: what the leaderboard ledger records)."""
    if lookup is not None:
        check_frame(frame, lookup, f"submission {name}")
    out_dir = Path(out_dir)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for attempt in range(100):
        path = out_dir / (f"{stamp}-{name}.csv" if attempt == 0 else f"{stamp}-{name}-{attempt}.csv")
        if path.exists():
            continue
        try:
            with atomic_path(path, overwrite=False) as tmp:
                frame.to_csv(tmp, index=False, float_format="%.4f")
        except FileExistsError:
            continue
        write_text(sidecar_path(path), json.dumps({"name": name, **(meta or {})}, indent=1))
        return path
    raise FkdError(f"could not find a free file name for {name}", path=out_dir)


def run_submission_name(run_dirs) -> str:
    """A blend's default name: its runs' folder names joined by +."""
    return "+".join(str(r).rstrip("/").split("/")[-1] for r in run_dirs)


def sidecar_path(submission_path) -> Path:
    """submissions/x.csv -> submissions/x.csv.json: what made the submission."""
    submission_path = Path(submission_path)
    return submission_path.with_name(submission_path.name + ".json")
