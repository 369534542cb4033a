"""`fkd kaggle ...` against a stand-in `kaggle` program that records its arguments and plays back output.

The real kaggle CLI is never called: the stand-in sits first on PATH and FKD_KAGGLE_PROGRAM is unset.
"""
import csv
import io
import json
import os
import stat
import sys
import zipfile
from pathlib import Path

import pytest

from fkd.cli import main
from fkd.kaggle import bundle, kernels, leaderboard, ledger, program

TOKEN = "s3cr3t-kaggle-key-9f8e7d"

STAND_IN = r'''#!@PYTHON@
import json, os, pathlib, sys
state = pathlib.Path(os.environ["FAKE_KAGGLE_DIR"])
args = sys.argv[1:]
with open(state / "calls.jsonl", "a") as handle:
    handle.write(json.dumps(args) + "\n")
script = json.loads((state / "script.json").read_text()) if (state / "script.json").exists() else {}
key = " ".join(args[:2])
entry = script.get(key, {})
if isinstance(entry, list):  # one answer per call, the last one repeated
    counter = state / ("count-" + key.replace(" ", "-"))
    n = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(n + 1))
    entry = entry[min(n, len(entry) - 1)]
if "-p" in args:
    out = pathlib.Path(args[args.index("-p") + 1])
    for rel, content in entry.get("files", {}).items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(content)
    for rel, source in entry.get("copy", {}).items():
        (out / rel).write_bytes(pathlib.Path(source).read_bytes())
sys.stdout.write(entry.get("stdout", ""))
sys.stderr.write(entry.get("stderr", ""))
sys.exit(entry.get("rc", 0))
'''


class StandIn:
    def __init__(self, root: Path):
        self.dir = root / "fake-kaggle-state"
        self.dir.mkdir()
        self.bin = root / "fake-bin"
        self.bin.mkdir()
        program = self.bin / "kaggle"
        program.write_text(STAND_IN.replace("@PYTHON@", sys.executable))
        program.chmod(program.stat().st_mode | stat.S_IXUSR)
        self.script = {}

    def answer(self, command: str, *entries, **entry):
        """What `kaggle COMMAND ...` prints: one entry, or a list played one per call."""
        self.script[command] = list(entries) if entries else entry
        (self.dir / "script.json").write_text(json.dumps(self.script))

    @property
    def calls(self):
        path = self.dir / "calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def fake(tmp_path, monkeypatch) -> StandIn:
    """Stand-in first on PATH, an empty HOME, and a token in the environment."""
    stand_in = StandIn(tmp_path)
    for name in list(os.environ):
        if name.startswith("KAGGLE_") or name == "FKD_KAGGLE_PROGRAM":
            monkeypatch.delenv(name)
    monkeypatch.setenv("PATH", str(stand_in.bin) + os.pathsep + os.environ.get("PATH", ""))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FAKE_KAGGLE_DIR", str(stand_in.dir))
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", TOKEN)
    monkeypatch.chdir(tmp_path)
    return stand_in


def fkd(*argv):
    return main(["kaggle", *map(str, argv)])


@pytest.fixture
def split_kernel(tmp_path) -> Path:
    config = tmp_path / "tiny.yaml"
    config.write_text("epochs: 1\n")
    bundle.build(config, tmp_path / "build" / "kernel", folds=2, split=True, username="alice")
    return tmp_path / "build" / "kernel"


@pytest.fixture
def single_kernel(tmp_path) -> Path:
    config = tmp_path / "tiny.yaml"
    config.write_text("epochs: 1\n")
    bundle.build(config, tmp_path / "build" / "single", folds=2, username="alice")
    return tmp_path / "build" / "single"


# ---------------------------------------------------------------- program and token

def test_missing_program_one_line(fake, monkeypatch, tmp_path, capsys):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(program, "VENV_BIN", empty)
    assert fkd("sync") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install kaggle" in err and TOKEN not in err
    assert fake.calls == []


@pytest.mark.parametrize("action", [["sync"], ["download", "--out", "data"], ["status"],
                                    ["submit", "--file", "s.csv", "--message", "m"]])
def test_missing_token_one_line(fake, monkeypatch, capsys, action, tmp_path):
    monkeypatch.delenv("KAGGLE_KEY")
    monkeypatch.delenv("KAGGLE_USERNAME")
    (tmp_path / "s.csv").write_text("RowId,Location\n")
    assert fkd(*action) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "~/.kaggle/access_token" in err and "kaggle.json" in err and "kaggle auth login" in err
    assert fake.calls == []


@pytest.mark.parametrize("setup", ["env-token", "env-token-file", "access_token", "kaggle.json",
                                   "config-dir", "xdg", "env-pair", "oauth"])
def test_token_places_of_kaggle_2_2_5(fake, monkeypatch, tmp_path, setup):
    monkeypatch.delenv("KAGGLE_KEY")
    monkeypatch.delenv("KAGGLE_USERNAME")
    home = tmp_path / "home"
    assert program.token_source() is None
    if setup == "env-token":
        monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)
    elif setup == "env-token-file":
        (tmp_path / "tok").write_text(TOKEN)
        monkeypatch.setenv("KAGGLE_API_TOKEN", str(tmp_path / "tok"))
    elif setup == "access_token":
        (home / ".kaggle").mkdir(parents=True)
        (home / ".kaggle" / "access_token").write_text(TOKEN + "\n")
    elif setup == "kaggle.json":
        (home / ".kaggle").mkdir(parents=True)
        (home / ".kaggle" / "kaggle.json").write_text(json.dumps({"username": "alice", "key": TOKEN}))
    elif setup == "config-dir":
        (tmp_path / "conf").mkdir()
        (tmp_path / "conf" / "kaggle.json").write_text(json.dumps({"username": "alice", "key": TOKEN}))
        monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "conf"))
    elif setup == "xdg":  # no ~/.kaggle: kaggle 2.2.5 follows XDG on linux
        if not sys.platform.startswith("linux"):
            pytest.skip("XDG fallback is linux-only in kaggle 2.2.5")
        (home / ".config" / "kaggle").mkdir(parents=True)
        (home / ".config" / "kaggle" / "kaggle.json").write_text(json.dumps({"username": "a", "key": TOKEN}))
    elif setup == "env-pair":
        monkeypatch.setenv("KAGGLE_USERNAME", "alice")
        monkeypatch.setenv("KAGGLE_KEY", TOKEN)
    elif setup == "oauth":
        (home / ".kaggle").mkdir(parents=True)
        (home / ".kaggle" / "credentials.json").write_text(json.dumps({"refresh_token": TOKEN}))
    source = program.token_source()
    assert source is not None and TOKEN not in source


def test_half_a_kaggle_json_is_no_token(fake, monkeypatch, tmp_path):
    monkeypatch.delenv("KAGGLE_KEY")
    (tmp_path / "home" / ".kaggle").mkdir(parents=True)
    (tmp_path / "home" / ".kaggle" / "kaggle.json").write_text('{"username": "alice"}')
    assert program.token_source() is None


def test_token_never_printed(fake, capsys, tmp_path):
    fake.answer("competitions submissions", stdout=f"debug: key={TOKEN}\n", stderr=f"401 bad token {TOKEN}\n", rc=1)
    ledger.append_row({"submitted_utc": "2024-01-01T00:00:00+00:00", "file": "a.csv", "message": "m"})
    assert fkd("sync") == 2
    out, err = capsys.readouterr()
    assert TOKEN not in out + err and "***" in out + err
    assert len(err.strip().splitlines()) == 1


def test_refused_token_says_where_it_goes(fake, capsys):
    fake.answer("competitions submissions", stdout="Authentication required to call the Kaggle API.\n", rc=1)
    ledger.append_row({"submitted_utc": "2024-01-01T00:00:00+00:00", "file": "a.csv", "message": "m"})
    assert fkd("sync") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "refused" in err and "access_token" in err


# ---------------------------------------------------------------- kernels

@pytest.mark.parametrize("text, state", [
    ('alice/fkd-x has status "KernelWorkerStatus.COMPLETE"\n', "complete"),
    ('alice/fkd-x has status "KernelWorkerStatus.RUNNING"\n', "running"),
    ('alice/fkd-x has status "running"\n', "running"),
    ('alice/fkd-x has status "KernelWorkerStatus.QUEUED"\n', "queued"),
    ('alice/fkd-x has status "KernelWorkerStatus.NEW_SCRIPT"\n', "queued"),
    ('alice/fkd-x has status "KernelWorkerStatus.ERROR"\nFailure message: "CUDA OOM"\n', "error"),
    ('alice/fkd-x has status "KernelWorkerStatus.CANCEL_ACKNOWLEDGED"\n', "cancelled"),
    ('alice/fkd-x has status "Complete"\n', "complete"),
    ("Status: COMPLETE\n", "complete"),
    ('alice/fkd-x has status "KernelWorkerStatus.SOMETHING_NEW"\n', "unknown"),
])
def test_status_matching(text, state):
    assert kernels.parse_status(text)[0] == state


def test_status_command(fake, single_kernel, capsys):
    fake.answer("kernels status", stdout='alice/fkd-facial-keypoints has status "KernelWorkerStatus.RUNNING"\n')
    assert fkd("status", "--kernel-dir", single_kernel) == 0
    assert fake.calls == [["kernels", "status", "alice/fkd-facial-keypoints"]]
    assert "running" in capsys.readouterr().out


def test_status_error_exit_and_failure_message(fake, split_kernel, capsys):
    fake.answer("kernels status", stdout='x has status "KernelWorkerStatus.ERROR"\nFailure message: "boom"\n')
    assert fkd("status", "--kernel-dir", split_kernel) == 1
    assert [c[2] for c in fake.calls] == [f"alice/fkd-facial-keypoints-{s}" for s in ("fold0", "fold1", "ensemble")]
    assert "boom" in capsys.readouterr().out


def test_status_wait_polls_until_done(fake, single_kernel):
    fake.answer("kernels status", {"stdout": 'x has status "KernelWorkerStatus.QUEUED"'},
                {"stdout": 'x has status "KernelWorkerStatus.RUNNING"'},
                {"stdout": 'x has status "KernelWorkerStatus.COMPLETE"'})
    assert fkd("status", "--kernel-dir", single_kernel, "--wait", "--poll", "0") == 0
    assert len(fake.calls) == 3


def test_push_single(fake, single_kernel):
    fake.answer("kernels push", stdout="Kernel version 1 successfully pushed.  Please check progress at https://x\n")
    assert fkd("push", "--kernel-dir", single_kernel) == 0
    assert fake.calls == [["kernels", "push", "-p", str(single_kernel)]]


def test_split_push_folds_then_ensemble(fake, split_kernel):
    fake.answer("kernels push", stdout="Kernel version 1 successfully pushed.\n")
    fake.answer("kernels status", stdout='x has status "KernelWorkerStatus.COMPLETE"\n')
    assert fkd("push", "--kernel-dir", split_kernel, "--poll", "0", "--accelerator", "NvidiaTeslaT4") == 0
    acc = ["--accelerator", "NvidiaTeslaT4"]
    assert fake.calls == [
        ["kernels", "push", "-p", str(split_kernel / "fold0"), *acc],
        ["kernels", "push", "-p", str(split_kernel / "fold1"), *acc],
        ["kernels", "status", "alice/fkd-facial-keypoints-fold0"],
        ["kernels", "status", "alice/fkd-facial-keypoints-fold1"],
        ["kernels", "push", "-p", str(split_kernel / "ensemble"), *acc],
    ]
    # what was pushed: fold kernels, then an ensemble whose sources are those fold kernels
    metas = [json.loads(Path(c[3], "kernel-metadata.json").read_text()) for c in fake.calls if c[1] == "push"]
    assert [m["id"] for m in metas] == [f"alice/fkd-facial-keypoints-{s}" for s in ("fold0", "fold1", "ensemble")]
    assert metas[2]["kernel_sources"] == [metas[0]["id"], metas[1]["id"]]
    assert all(m["kernel_sources"] == [] for m in metas[:2])


def test_split_push_stops_when_a_fold_fails(fake, split_kernel):
    fake.answer("kernels push", stdout="Kernel version 1 successfully pushed.\n")
    fake.answer("kernels status", stdout='x has status "KernelWorkerStatus.ERROR"\n')
    assert fkd("push", "--kernel-dir", split_kernel, "--poll", "0") == 2
    assert [c[3] for c in fake.calls if c[1] == "push"] == [str(split_kernel / "fold0"), str(split_kernel / "fold1")]


def test_push_ensemble_only_without_waiting(fake, split_kernel):
    fake.answer("kernels push", stdout="Kernel version 2 successfully pushed.\n")
    assert fkd("push", "--kernel-dir", split_kernel, "--only", "ensemble", "--no-wait") == 0
    assert fake.calls == [["kernels", "push", "-p", str(split_kernel / "ensemble")]]


def test_push_error_reported(fake, single_kernel, capsys):
    fake.answer("kernels push", stdout="Kernel push error: Notebook not found\n")
    assert fkd("push", "--kernel-dir", single_kernel) == 2
    assert "Notebook not found" in capsys.readouterr().err


def test_push_refuses_placeholder_id(fake, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)
    config = tmp_path / "c.yaml"
    config.write_text("epochs: 1\n")
    bundle.build(config, tmp_path / "k")
    assert fkd("push", "--kernel-dir", tmp_path / "k") == 2
    assert "username" in capsys.readouterr().err and fake.calls == []


def test_push_revalidates_metadata(fake, single_kernel, capsys):
    meta_path = single_kernel / "kernel-metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["enable_gpus"] = True
    meta_path.write_text(json.dumps(meta))
    assert fkd("push", "--kernel-dir", single_kernel) == 2
    err = capsys.readouterr().err
    assert "enable_gpus" in err and str(meta_path) in err and fake.calls == []


def test_output_pages_and_runs(fake, single_kernel, tmp_path, capsys):
    fake.answer("kernels output",
                {"files": {"runs/tiny/fold0.pt": "w0", "runs/tiny/config.json": "{}"},
                 "stdout": "Output file downloaded\nNext page token: PAGE2\n"},
                {"files": {"runs/tiny/fold1.pt": "w1", "runs/tiny/oof.csv": "row,fold\n",
                           "submission.csv": "RowId,Location\n", "fkd-facial-keypoints.log": "log"}})
    assert fkd("output", "--kernel-dir", single_kernel, "--runs-dir", "runs") == 0
    stage = str(single_kernel / "output" / "fkd-facial-keypoints")
    assert fake.calls == [
        ["kernels", "output", "alice/fkd-facial-keypoints", "-p", stage, "-o"],
        ["kernels", "output", "alice/fkd-facial-keypoints", "-p", stage, "-o", "--page-token", "PAGE2"],
    ]
    runs = tmp_path / "runs"
    assert sorted(p.relative_to(runs).as_posix() for p in runs.rglob("*") if p.is_file()) == [
        "tiny/config.json", "tiny/fold0.pt", "tiny/fold1.pt", "tiny/oof.csv"]
    assert 'make submit RUNS="runs/tiny"' in capsys.readouterr().out


def test_split_output_takes_the_ensemble_run(fake, split_kernel, tmp_path):
    fake.answer("kernels output", files={"runs/tiny/fold0.pt": "w0", "runs/tiny/fold1.pt": "w1",
                                         "runs/tiny/oof.csv": "row\n", "submission.csv": "RowId,Location\n"})
    assert fkd("output", "--kernel-dir", split_kernel) == 0
    assert [c[2] for c in fake.calls] == ["alice/fkd-facial-keypoints-ensemble"]
    assert sorted(p.name for p in (tmp_path / "runs" / "tiny").iterdir()) == ["fold0.pt", "fold1.pt", "oof.csv"]


def test_split_output_falls_back_to_fold_kernels(fake, split_kernel, tmp_path, capsys):
    fake.answer("kernels output", {"files": {"fkd-facial-keypoints-ensemble.log": "failed"}},
                {"files": {"runs/tiny/fold0.pt": "w0", "runs/tiny/config.json": "{}"}},
                {"files": {"runs/tiny/fold1.pt": "w1", "runs/tiny/config.json": "{}"}})
    assert fkd("output", "--kernel-dir", split_kernel) == 0
    assert [c[2] for c in fake.calls] == [f"alice/fkd-facial-keypoints-{s}" for s in ("ensemble", "fold0", "fold1")]
    assert sorted(p.name for p in (tmp_path / "runs" / "tiny").iterdir()) == ["config.json", "fold0.pt", "fold1.pt"]
    assert "fkd cv" in capsys.readouterr().out


def make_competition_zip(tmp_path: Path, drop=None) -> Path:
    inner = {}
    for stem in ("training", "test"):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr(f"{stem}.csv", "header\n")
        inner[f"{stem}.zip"] = buffer.getvalue()
    inner["IdLookupTable.csv"] = b"RowId,ImageId,FeatureName,Location\n"
    inner["SampleSubmission.csv"] = b"RowId,Location\n"
    inner.pop(drop, None)
    path = tmp_path / "download.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in inner.items():
            archive.writestr(name, data)
    return path


def test_download_unzips_and_checks(fake, tmp_path):
    source = make_competition_zip(tmp_path)
    fake.answer("competitions download", copy={"facial-keypoints-detection.zip": str(source)})
    assert fkd("download", "--out", "data") == 0
    assert fake.calls == [["competitions", "download", "facial-keypoints-detection", "-p", "data"]]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [
        "IdLookupTable.csv", "SampleSubmission.csv", "test.zip", "training.zip"]
    assert fkd("download", "--out", "data") == 0  # already there: no second download
    assert len(fake.calls) == 1


def test_download_missing_file_is_an_error(fake, tmp_path, capsys):
    source = make_competition_zip(tmp_path, drop="test.zip")
    fake.answer("competitions download", copy={"facial-keypoints-detection.zip": str(source)})
    assert fkd("download", "--out", "data") == 2
    assert "test.zip" in capsys.readouterr().err


def test_download_rules_not_accepted(fake, capsys):
    fake.answer("competitions download", stderr="403 Client Error: Forbidden\n", rc=1)
    assert fkd("download", "--out", "data") == 2
    assert "rules" in capsys.readouterr().err


# ---------------------------------------------------------------- leaderboard

def submission_files(tmp_path: Path):
    folder = tmp_path / "submissions"
    folder.mkdir()
    first = folder / "20240101T100000Z-resnet.csv"
    first.write_text("RowId,Location\n1,40.0\n")
    (folder / (first.name + ".json")).write_text(json.dumps(
        {"name": "resnet", "runs": ["runs/resnet", "runs/lenet"], "oof_rmse": 1.75}))
    second = folder / "20240102T100000Z-mean.csv"
    second.write_text("RowId,Location\n1,41.0\n")
    return first, second


def test_submit_then_sync(fake, tmp_path):
    first, second = submission_files(tmp_path)
    fake.answer("competitions submit", {"stdout": "100%|###| 1k/1k\nSubmission ref: 4242\nSuccessfully submitted\n"},
                {"stdout": "Successfully submitted to Facial Keypoints Detection\n"})
    assert fkd("submit", "--file", first.relative_to(tmp_path), "--message", "resnet blend") == 0
    assert fkd("submit", "--file", second.relative_to(tmp_path), "-m", "mean shape") == 0
    assert fake.calls == [
        ["competitions", "submit", "facial-keypoints-detection", "-f", "submissions/20240101T100000Z-resnet.csv",
         "-m", "resnet blend"],
        ["competitions", "submit", "facial-keypoints-detection", "-f", "submissions/20240102T100000Z-mean.csv",
         "-m", "mean shape"],
    ]
    rows = ledger.read_ledger(tmp_path / "submissions" / "ledger.csv")
    assert [r["file"] for r in rows] == ["submissions/20240101T100000Z-resnet.csv",
                                         "submissions/20240102T100000Z-mean.csv"]
    assert rows[0]["runs"] == "runs/resnet;runs/lenet" and float(rows[0]["oof_rmse"]) == 1.75
    assert rows[0]["ref"] == "4242" and rows[0]["message"] == "resnet blend" and rows[0]["status"] == "pending"
    assert rows[1]["runs"] == "" and rows[1]["oof_rmse"] == "" and rows[1]["ref"] == ""
    assert rows[0]["public_score"] == rows[0]["private_score"] == ""
    sent = [r["submitted_utc"] for r in rows]

    # Kaggle's list (newest first), as `kaggle competitions submissions ... --csv` prints it
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(["ref", "fileName", "date", "description", "status", "publicScore", "privateScore"])
    writer.writerow(["4300", "20240102T100000Z-mean.csv", "2020-01-01 00:00:00", "mean shape",
                     "SubmissionStatus.COMPLETE", "3.96", "3.91"])  # same file, long before: not ours
    writer.writerow(["4243", "20240102T100000Z-mean.csv", sent[1].replace("T", " ")[:19], "mean shape",
                     "SubmissionStatus.COMPLETE", "3.77777", "3.70001"])
    writer.writerow(["4242", "20240101T100000Z-resnet.csv", sent[0][:19], "resnet blend",
                     "SubmissionStatus.COMPLETE", "1.90123", "1.88"])
    writer.writerow(["4100", "other.csv", "2023-12-01 00:00:00", "by hand", "SubmissionStatus.ERROR", "None", "None"])
    fake.answer("competitions submissions", stdout=table.getvalue())
    assert fkd("sync") == 0
    assert fake.calls[-1] == ["competitions", "submissions", "facial-keypoints-detection", "--csv"]
    rows = ledger.read_ledger(tmp_path / "submissions" / "ledger.csv")
    assert (rows[0]["ref"], rows[0]["public_score"], rows[0]["private_score"]) == ("4242", "1.90123", "1.88")
    assert (rows[1]["ref"], rows[1]["public_score"], rows[1]["private_score"]) == ("4243", "3.77777", "3.70001")
    assert rows[0]["status"] == rows[1]["status"] == "complete"
    assert float(rows[0]["oof_rmse"]) == 1.75 and rows[0]["runs"] == "runs/resnet;runs/lenet"
    assert not list((tmp_path / "submissions").glob("*.tmp"))


def test_submit_checks_the_file_first(fake, tmp_path, competition, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("RowId,Location\n1,40\n")
    assert fkd("submit", "--file", bad, "-m", "x", "--lookup", competition / "IdLookupTable.csv") == 2
    assert "RowId" in capsys.readouterr().err
    assert fake.calls == [] and not (tmp_path / "submissions" / "ledger.csv").exists()


def test_submit_failure_adds_no_row(fake, tmp_path):
    first, _ = submission_files(tmp_path)
    fake.answer("competitions submit", stderr="Could not submit to competition\n", rc=1)
    assert fkd("submit", "--file", first, "-m", "x") == 2
    assert not (tmp_path / "submissions" / "ledger.csv").exists()


def test_parse_submissions_skips_preamble():
    text = ("Warning: Looks like you're using an outdated API Version\n"
            "ref,fileName,date,description,status,publicScore,privateScore\n"
            "7,a.csv,2024-03-01 10:00:00.123000,hello,SubmissionStatus.PENDING,,\n")
    [row] = leaderboard.parse_submissions(text)
    assert row["ref"] == "7" and row["status"] == "pending" and row["publicScore"] == ""
    assert row["date"].year == 2024 and row["date"].tzinfo is not None
