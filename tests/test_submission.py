import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from fkd.core.errors import FkdError
from fkd.core.keypoints import COLUMNS
from fkd.data.competition import load_lookup
from fkd.submit.submission import (
    check_submission,
    sidecar_path,
    submission_frame,
    write_submission,
)


def _frame_for(lookup, seed=0):
    ids = np.sort(lookup["ImageId"].unique())
    predictions = np.random.default_rng(seed).uniform(-5, 101, size=(len(ids), 30))
    return submission_frame(predictions, ids, lookup), predictions, ids


def test_real_lookup_layout_passes(kaggle_lookup, tmp_path):
    lookup = load_lookup(kaggle_lookup)
    assert len(lookup) == 27124 and lookup["ImageId"].nunique() == 1783
    frame, predictions, ids = _frame_for(lookup)
    assert frame["RowId"].tolist() == lookup["RowId"].tolist()
    assert frame["Location"].between(0, 96).all()
    # a value that needs no clipping lands unchanged on its RowId
    row = lookup.iloc[1234]
    want = predictions[np.searchsorted(ids, row["ImageId"]), COLUMNS.index(row["FeatureName"])]
    assert frame["Location"].iloc[1234] == pytest.approx(np.clip(want, 0, 96))
    path = write_submission(frame, "random", tmp_path, lookup=lookup)
    check_submission(path, lookup)


def _broken(lookup, tmp_path, edit):
    frame, _, _ = _frame_for(lookup)
    frame = frame.astype({"Location": object})
    frame = edit(frame)
    path = tmp_path / "broken.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("edit, match", [
    (lambda f: f.drop(index=5), r"1 RowIds missing, first 6"),
    (lambda f: pd.concat([f.iloc[:3], f.iloc[2:3], f.iloc[3:]]), r"row 4 \(line 5\), column RowId: RowId 3 appears twice"),
    (lambda f: pd.concat([f, pd.DataFrame({"RowId": [99999], "Location": [1.0]})]), r"RowId 99999 is not in the lookup"),
    (lambda f: f.iloc[[1, 0] + list(range(2, len(f)))], r"row 1 \(line 2\), column RowId: RowId 2 out of order"),
    (lambda f: f.assign(Location=f["Location"].where(f.index != 7, np.nan)), r"row 8 \(line 9\), column Location: .*missing or not a number"),
    (lambda f: f.assign(Location=f["Location"].where(f.index != 7, "abc")), r"row 8 \(line 9\), column Location: 'abc'"),
    (lambda f: f.assign(Location=f["Location"].where(f.index != 9, 96.5)), r"row 10 \(line 11\), column Location: '96.5' is outside \[0, 96\]"),
    (lambda f: f.assign(Location=f["Location"].where(f.index != 9, -0.1)), r"row 10 \(line 11\), column Location: '-0.1' is outside"),
    (lambda f: f.assign(Location=f["Location"].where(f.index != 9, "inf")), r"row 10 \(line 11\), column Location: 'inf' is not finite"),
    (lambda f: f.assign(RowId=f["RowId"].astype(object).where(f.index != 2, "x")), r"row 3 \(line 4\), column RowId: RowId 'x'"),
    (lambda f: f.rename(columns={"Location": "Value"}), r"header is RowId,Value"),
])
def test_validator_rejects_each_defect(kaggle_lookup, tmp_path, edit, match):
    lookup = load_lookup(kaggle_lookup)
    path = _broken(lookup, tmp_path, edit)
    with pytest.raises(FkdError, match=match) as error:
        check_submission(path, lookup)
    assert str(error.value).startswith(str(path))


def test_submission_files_are_never_overwritten(competition, tmp_path):
    lookup = load_lookup(competition)
    frame, _, _ = _frame_for(lookup)
    paths = [write_submission(frame, "same", tmp_path, meta={"runs": ["a"]}) for _ in range(3)]
    assert len(set(paths)) == 3 and all(p.is_file() for p in paths)
    assert sidecar_path(paths[0]).is_file()
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))


def test_invalid_frame_writes_nothing(competition, tmp_path):
    lookup = load_lookup(competition)
    frame, _, _ = _frame_for(lookup)
    frame.loc[3, "Location"] = np.nan
    with pytest.raises(FkdError):
        write_submission(frame, "bad", tmp_path, lookup=lookup)
    assert not list(tmp_path.iterdir())


def test_missing_image_prediction_is_an_error(competition):
    lookup = load_lookup(competition)
    ids = np.sort(lookup["ImageId"].unique())[1:]
    with pytest.raises(FkdError, match=r"no prediction for ImageId"):
        submission_frame(np.zeros((len(ids), 30)), ids, lookup)


def test_round_trip_synth_submit_check(tmp_path):
    run = lambda *args: subprocess.run([sys.executable, "-m", "fkd", *args], capture_output=True, text=True)
    synth = run("synth", "--out", str(tmp_path / "comp"), "--train", "120", "--test", "12", "--seed", "3")
    assert synth.returncode == 0, synth.stderr
    submit = run("submit", "--data-dir", str(tmp_path / "comp"), "--model", "mean", "--out-dir", str(tmp_path / "subs"))
    assert submit.returncode == 0, submit.stderr
    [path] = tmp_path.glob("subs/*-mean.csv")
    check = run("check-submission", str(path), "--lookup", str(tmp_path / "comp" / "IdLookupTable.csv"))
    assert check.returncode == 0 and "ok" in check.stdout
    lookup = pd.read_csv(tmp_path / "comp" / "IdLookupTable.csv")
    written = pd.read_csv(path)
    assert len(written) == len(lookup)
    # the mean shape: every image gets the same value for a feature
    per_feature = written.assign(f=lookup["FeatureName"]).groupby("f")["Location"].nunique()
    assert (per_feature == 1).all()
    path.write_text(path.read_text().replace("\n1,", "\n1,abc", 1))
    bad = run("check-submission", str(path), "--lookup", str(tmp_path / "comp" / "IdLookupTable.csv"))
    assert bad.returncode == 2 and "column Location" in bad.stderr and "Traceback" not in bad.stderr


def test_written_files_are_readable_by_others(competition, tmp_path):
    import os
    import stat
    lookup = load_lookup(competition)
    frame, _, _ = _frame_for(lookup)
    path = write_submission(frame, "perm", tmp_path)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


@pytest.mark.parametrize("content, message", [
    (b"", r"is empty"),
    (b"\n\n", r"is empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", r"is not a text file"),
    (b"RowId,Location\n1,2\x00\n", r"is not a text file \(it holds NUL bytes\)"),
])
def test_check_submission_on_an_empty_or_binary_file_is_one_line(content, message, competition, tmp_path):
    path = tmp_path / "submission.csv"
    path.write_bytes(content)
    with pytest.raises(FkdError, match=message):
        check_submission(path, load_lookup(competition))
    result = subprocess.run([sys.executable, "-m", "fkd", "check-submission", str(path), "--lookup",
                             str(competition / "IdLookupTable.csv")], capture_output=True, text=True)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert str(path) in result.stderr and "Traceback" not in result.stderr
