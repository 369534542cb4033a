"""What fkd reloads is input too: checkpoints are data, a run's parts belong together, one process
writes a run, and no command replaces a file it did not write."""
import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from fkd.cli import main
from fkd.core.errors import FkdError
from fkd.core.lock import LOCK_FILE, writer_lock
from fkd.core.metrics import rmse
from fkd.data.competition import load_training
from fkd.train import checkpoint
from fkd.train.rundir import read_json, read_oof

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "tiny.yaml")


class Payload:
    """Pickled, this calls os.system on load: what a hostile checkpoint does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def hostile_checkpoint(path, marker):
    torch.save({"state_dict": {}, "config": {}, "fold": 0, "payload": Payload(marker)}, path)
    return path


def cv(competition, runs, *extra):
    return main(["cv", "--data-dir", str(competition), "--config", TINY, "--runs-dir", str(runs), *extra])


@pytest.fixture(scope="module")
def finished(competition, tmp_path_factory):
    """Two finished tiny runs of one config on the same folds, seeds 0 and 1."""
    runs = tmp_path_factory.mktemp("runs")
    assert cv(competition, runs, "--name", "a") == 0
    assert cv(competition, runs, "--name", "b", "--set", "seed=1") == 0
    return runs


@pytest.fixture
def run_copy(finished, tmp_path):
    """A copy of run a to spoil."""
    return shutil.copytree(finished / "a", tmp_path / "runs" / "a")


def run_files(run_dir) -> dict:
    return {p.name: p.read_bytes() for p in sorted(run_dir.iterdir()) if p.is_file()}


def test_a_checkpoint_that_would_run_code_is_refused_naming_it(tmp_path):
    marker = tmp_path / "ran"
    path = hostile_checkpoint(tmp_path / "fold0.pt", marker)
    with pytest.raises(checkpoint.RefusedCheckpoint) as refused:
        checkpoint.load(path)
    assert not marker.exists()
    assert str(path) in str(refused.value) and "system" in str(refused.value)
    assert "\n" not in str(refused.value)


def test_no_command_runs_a_hostile_checkpoint(competition, run_copy, tmp_path, capsys):
    marker = tmp_path / "ran"
    hostile_checkpoint(run_copy / "fold1.pt", marker)
    photo = tmp_path / "photo.png"
    photo.write_bytes(_png())
    by_manifest = [  # the run's manifest no longer matches: refused before any checkpoint is read
        ["submit", "--data-dir", str(competition), "--runs", str(run_copy), "--out-dir", str(tmp_path / "subs")],
        ["report", str(run_copy), "--data-dir", str(competition)],
        ["face", str(photo), "--runs", str(run_copy), "--out", str(tmp_path / "faces")],
        ["export", "--runs", str(run_copy), "--out", str(tmp_path / "m.onnx"), "--data-dir", str(competition)],
    ]
    by_load = [  # a run from before manifests: the load itself refuses
        ["cv", "--data-dir", str(competition), "--config", TINY, "--runs-dir", str(run_copy.parent), "--name", "a"],
        ["export", "--runs", str(run_copy), "--out", str(tmp_path / "m.onnx"), "--data-dir", str(competition)],
    ]
    for command in by_manifest + ["drop the manifest"] + by_load:
        if command == "drop the manifest":
            (run_copy / "manifest.json").unlink()
            continue
        capsys.readouterr()
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert "fold1.pt" in err and len(err.strip().splitlines()) == 1, (command, err)
        assert not marker.exists(), command
    assert "refused: it holds posix.system" in err
    assert (run_copy / "fold1.pt").is_file()  # refused, not moved aside and trained over
    assert not (tmp_path / "m.onnx").exists()


def _png() -> bytes:
    import cv2

    ok, data = cv2.imencode(".png", np.full((120, 120), 128, np.uint8))
    return data.tobytes()


def test_a_hostile_resume_state_framer_or_teacher_is_refused(competition, finished, tmp_path, capsys):
    from fkd.train.framer import Framer

    marker = tmp_path / "ran"
    runs = tmp_path / "runs"
    (runs / "r").mkdir(parents=True)
    hostile_checkpoint(runs / "r" / "resume-fold0.pt", marker)
    assert cv(competition, runs, "--name", "r") == 2
    assert "resume-fold0.pt" in capsys.readouterr().err and not marker.exists()

    with pytest.raises(FkdError, match="framer.pt"):
        Framer.load(hostile_checkpoint(tmp_path / "framer.pt", marker))
    assert not marker.exists()

    teacher = shutil.copytree(finished / "a", tmp_path / "teacher")
    (teacher / "manifest.json").unlink()
    hostile_checkpoint(teacher / "fold0.pt", marker)
    assert cv(competition, runs, "--name", "student", "--set", f"pseudo_labels={teacher}") == 2
    assert "fold0.pt" in capsys.readouterr().err and not marker.exists()
    assert not (runs / "student").exists()  # a failed first try leaves no folder


def test_checkpoints_of_the_earlier_format_still_load(finished, tmp_path):
    saved = checkpoint.load(finished / "a" / "fold0.pt")
    assert saved["format"] == checkpoint.FORMAT and isinstance(saved["val_pred"], np.ndarray)
    old = {key: (value.numpy() if key in checkpoint.ARRAY_KEYS else value) for key, value in
           torch.load(finished / "a" / "fold0.pt", weights_only=True).items() if key not in ("format", "identity")}
    old["numpy_rng"] = np.random.get_state()  # format 1 pickled numpy arrays and tuples
    torch.save(old, tmp_path / "fold0.pt")
    loaded = checkpoint.load(tmp_path / "fold0.pt")
    np.testing.assert_array_equal(loaded["val_pred"], saved["val_pred"])
    checkpoint.check_identity(tmp_path / "fold0.pt", loaded, 0, read_json(finished / "a" / "config.json"))
    with pytest.raises(FkdError, match="another run"):
        checkpoint.check_identity(tmp_path / "fold0.pt", loaded, 1)


def test_a_fold_of_another_run_is_refused_before_anything_is_rewritten(competition, finished, run_copy, tmp_path,
                                                                       capsys):
    shutil.copyfile(finished / "b" / "fold1.pt", run_copy / "fold1.pt")
    before = run_files(run_copy)
    commands = [
        ["cv", "--data-dir", str(competition), "--config", TINY, "--runs-dir", str(run_copy.parent), "--name", "a"],
        ["submit", "--data-dir", str(competition), "--runs", str(run_copy), "--out-dir", str(tmp_path / "subs")],
        ["report", str(run_copy), "--data-dir", str(competition)],
        ["export", "--runs", str(run_copy), "--out", str(tmp_path / "m.onnx"), "--data-dir", str(competition)],
    ]
    for command in commands:
        capsys.readouterr()
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert "fold1.pt" in err and len(err.strip().splitlines()) == 1, (command, err)
    assert run_files(run_copy) == before
    assert not (tmp_path / "m.onnx").exists() and not list((tmp_path / "subs").glob("*.csv"))

    (run_copy / "manifest.json").unlink()  # without the manifest, the fold's own identity refuses it
    capsys.readouterr()
    assert main(commands[0]) == 2 and main(commands[3]) == 2
    err = capsys.readouterr().err
    assert err.count("belongs to another run (it differs in the trained settings)") == 2, err


def test_a_truncated_oof_is_noticed(competition, run_copy, capsys):
    lines = (run_copy / "oof.csv").read_text().splitlines(keepends=True)
    (run_copy / "oof.csv").write_text("".join(lines[: len(lines) // 2]))
    assert main(["report", str(run_copy), "--data-dir", str(competition)]) == 2
    assert "oof.csv" in capsys.readouterr().err
    (run_copy / "manifest.json").unlink()  # a run from before manifests: the rows are counted
    with pytest.raises(FkdError, match="truncated or edited"):
        read_oof(run_copy)


def test_a_second_writer_is_refused_and_the_first_run_stays_whole(competition, tmp_path):
    config = tmp_path / "slow.yaml"
    config.write_text("model: lenet\nfolds: 2\nepochs: 100\nbatch_size: 16\nprecision: fp32\n")
    runs = tmp_path / "runs"
    command = [sys.executable, "-m", "fkd", "cv", "--data-dir", str(competition), "--config", str(config),
               "--runs-dir", str(runs), "--name", "race"]
    first = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, line = time.time() + 120, ""
    while "fold 0 epoch 1/" not in line and time.time() < deadline:
        line = first.stdout.readline()
    assert first.poll() is None, "the first run finished before a second could race it"
    second = subprocess.run(command + ["--set", "seed=1"], cwd=REPO, capture_output=True, text=True)
    reader = subprocess.run([sys.executable, "-m", "fkd", "submit", "--data-dir", str(competition), "--runs",
                             str(runs / "race"), "--out-dir", str(tmp_path / "subs")],
                            cwd=REPO, capture_output=True, text=True)
    assert first.poll() is None, "the first run finished before the second was refused: make it longer"
    first.communicate(timeout=300)
    assert first.returncode == 0
    assert second.returncode == 2 and f"pid {first.pid} on {socket.gethostname()}" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    assert reader.returncode == 2 and "being written" in reader.stderr
    run_dir = runs / "race"
    assert read_json(run_dir / "config.json")["seed"] == 0
    _, truth = load_training(competition)
    _, oof = read_oof(run_dir)
    assert read_json(run_dir / "metrics.json")["rmse"] == pytest.approx(rmse(oof, truth), abs=1e-3)


def test_the_lock_of_a_dead_writer_is_taken_over_and_another_hosts_is_not(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / LOCK_FILE).write_text(f'{{"pid": {dead.stdout.strip()}, "host": "{socket.gethostname()}", '
                                      '"started": "2026-01-01T00:00:00Z"}')
    said = []
    with writer_lock(tmp_path, log=said.append) as holder:
        assert holder["pid"] == os.getpid()
        assert "no longer running" in said[0]
        with pytest.raises(FkdError, match=f"being written by pid {os.getpid()}"):
            with writer_lock(tmp_path):
                pass
    assert (tmp_path / LOCK_FILE).read_text() == ""
    (tmp_path / LOCK_FILE).write_text('{"pid": 1, "host": "elsewhere", "started": "2026-01-01T00:00:00Z"}')
    with pytest.raises(FkdError, match="locked by pid 1 on elsewhere.*delete"):
        with writer_lock(tmp_path):
            pass


def test_submit_never_replaces_a_file_it_did_not_write(competition, finished, tmp_path, capsys):
    training = tmp_path / "training.csv"
    shutil.copyfile(competition / "training.csv", training)
    submit = ["submit", "--data-dir", str(competition), "--model", "mean", "--out-dir", str(tmp_path / "subs")]
    first = tmp_path / "submission.csv"
    assert main(submit + ["--out", str(first)]) == 0
    made = first.read_bytes()
    capsys.readouterr()
    assert main(submit + ["--out", str(first)]) == 2
    assert "--force" in capsys.readouterr().err
    for target in (training, tmp_path):
        assert main(submit + ["--out", str(target), "--force"]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert training.read_bytes() == (competition / "training.csv").read_bytes()
    assert first.read_bytes() == made
    assert main(submit + ["--out", str(first), "--force"]) == 0


def test_names_stay_inside_their_folders(competition, tmp_path, capsys):
    for name in ("../../x", "", "a/b", ".."):
        assert cv(competition, tmp_path / "runs", "--name", name) == 2, name
        assert main(["submit", "--data-dir", str(competition), "--model", "mean", "--name", name,
                     "--out-dir", str(tmp_path / "subs")]) == 2, name
    assert "--name" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) in ([], ["subs"])
    assert not list(tmp_path.glob("subs/*.csv")) and not (tmp_path.parent / "x").exists()


def test_places_that_cannot_be_written_are_one_line(competition, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert cv(competition, blocker / "runs") == 2
    assert main(["submit", "--data-dir", str(competition), "--model", "mean", "--out-dir", str(blocker / "s")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(str(blocker) in line for line in err)


def test_a_hostile_pickle_in_the_old_file_layout_is_refused_too(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "fold0.pt"
    torch.save({"state_dict": {}, "payload": Payload(marker)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(checkpoint.RefusedCheckpoint, match="system"):
        checkpoint.load(path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(FkdError, match="damaged checkpoint"):
        checkpoint.load(path)
    assert not marker.exists()


def test_a_resume_state_of_another_config_is_kept_and_the_new_config_refused(competition, tmp_path, capsys):
    runs = tmp_path / "runs"
    folder = runs / "r"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"name": "r", "seed": 9}')
    (folder / "resume-fold0.pt").write_bytes(b"the state of a config with seed 9")
    assert cv(competition, runs, "--name", "r") == 2
    assert "another config" in capsys.readouterr().err
    assert (folder / "resume-fold0.pt").read_bytes() == b"the state of a config with seed 9"
    assert '"seed": 9' in (folder / "config.json").read_text()


def test_an_unfinished_teacher_is_refused_before_anything_is_made(competition, finished, tmp_path, capsys):
    teacher = shutil.copytree(finished / "a", tmp_path / "teacher")
    (teacher / "metrics.json").unlink()
    (teacher / "manifest.json").unlink()
    assert cv(competition, tmp_path / "runs", "--name", "s", "--set", f"pseudo_labels={teacher}") == 2
    assert "not a finished run" in capsys.readouterr().err and not (tmp_path / "runs").exists()


def test_force_never_replaces_a_submission_shaped_file_fkd_did_not_write(competition, tmp_path, capsys):
    sample = tmp_path / "SampleSubmission.csv"
    shutil.copyfile(competition / "SampleSubmission.csv", sample)
    before = sample.read_bytes()
    assert main(["submit", "--data-dir", str(competition), "--model", "mean", "--out", str(sample), "--force",
                 "--out-dir", str(tmp_path / "subs")]) == 2
    assert "fkd submit wrote" in capsys.readouterr().err and sample.read_bytes() == before


def test_damaged_run_files_are_one_line(competition, run_copy, tmp_path, capsys):
    (run_copy / "manifest.json").write_text("[1, 2]")
    assert main(["submit", "--data-dir", str(competition), "--runs", str(run_copy),
                 "--out-dir", str(tmp_path / "subs")]) == 2
    assert "holds list where fkd expects an object" in capsys.readouterr().err
    (run_copy / "manifest.json").unlink()
    (run_copy / "metrics.json").write_bytes(b"\xff\xfe")
    assert main(["report", str(run_copy)]) == 2
    assert "not a UTF-8 text file" in capsys.readouterr().err


def test_a_checkpoint_whose_weights_do_not_fit_is_one_line(competition, run_copy, tmp_path, capsys):
    saved = torch.load(run_copy / "fold0.pt", weights_only=True)
    saved["state_dict"] = {k: v[:1] for k, v in saved["state_dict"].items()}
    torch.save(saved, run_copy / "fold0.pt")
    (run_copy / "manifest.json").unlink()
    assert main(["export", "--runs", str(run_copy), "--out", str(tmp_path / "m.onnx"), "--equal"]) == 2
    err = capsys.readouterr().err.strip()
    assert "fold0.pt" in err and "do not make its model" in err and len(err.splitlines()) == 1


def test_an_answer_outside_the_image_is_one_line(competition, tmp_path, capsys):
    holdout = tmp_path / "holdout"
    assert main(["holdout", "--data-dir", str(competition), "--out", str(holdout)]) == 0
    assert main(["submit", "--data-dir", str(holdout), "--model", "mean", "--out", str(tmp_path / "s.csv"),
                 "--out-dir", str(tmp_path / "subs")]) == 0
    lines = (holdout / "answers.csv").read_text().splitlines()
    lines[2] = lines[2].split(",")[0] + ",1e300"
    (holdout / "answers.csv").write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert main(["check-submission", str(tmp_path / "s.csv"), "--lookup", str(holdout),
                 "--answers", str(holdout / "answers.csv")]) == 2
    assert "row 2 (line 3), column Location: 1e+300 is outside the image" in capsys.readouterr().err


def test_a_long_derived_submission_name_is_refused_before_the_work(competition, finished, tmp_path, capsys):
    runs = []
    for k in range(4):
        runs.append(tmp_path / ("r" * 40 + str(k)))
        shutil.copytree(finished / "a", runs[-1])
    assert main(["submit", "--data-dir", str(competition), "--runs", *map(str, runs),
                 "--out-dir", str(tmp_path / "subs")]) == 2
    assert "pass --name" in capsys.readouterr().err and not (tmp_path / "subs").exists()


def test_an_option_argparse_refuses_is_one_line(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["face", "x.png", "--min-face", "-5"])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fkd face: error: argument --min-face")


def test_a_refused_second_writer_leaves_the_first_writers_new_folder_alone(competition, tmp_path, capsys):
    folder = tmp_path / "runs" / "r"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    with writer_lock(folder):  # the first writer, before its first epoch: config.json and its lock only
        assert cv(competition, tmp_path / "runs", "--name", "r") == 2
        assert "being written" in capsys.readouterr().err
        assert (folder / "config.json").is_file() and (folder / LOCK_FILE).is_file()


def test_a_resume_state_of_other_data_or_folds_is_not_resumed(tmp_path):
    from fkd.train.loop import load_resume_state

    config = {"folds": 2, "fold_seed": 0, "seed": 0}
    here = checkpoint.identity(config, "data-a", np.array([0, 1, 0, 1]), 0)
    checkpoint.save({"state_dict": {}, "identity": here}, tmp_path / "resume-fold0.pt")
    said = []
    assert load_resume_state(tmp_path / "resume-fold0.pt", here, said.append) is not None
    for other in (checkpoint.identity(config, "data-b", np.array([0, 1, 0, 1]), 0),
                  checkpoint.identity(config, "data-a", np.array([1, 0, 0, 1]), 0)):
        assert load_resume_state(tmp_path / "resume-fold0.pt", other, said.append) is None
    assert "another config, data or folds" in said[-1]


def test_submit_never_writes_its_sidecar_over_a_file_it_did_not_write(competition, tmp_path, capsys):
    (tmp_path / "s.csv.json").write_text("mine")
    assert main(["submit", "--data-dir", str(competition), "--model", "mean", "--out", str(tmp_path / "s.csv"),
                 "--out-dir", str(tmp_path / "subs")]) == 2
    assert "s.csv.json" in capsys.readouterr().err and (tmp_path / "s.csv.json").read_text() == "mine"


def test_a_data_stamp_without_a_row_count_is_one_line(run_copy):
    (run_copy / "manifest.json").unlink()
    (run_copy / "data.json").write_text('{"training_rows": "many", "fingerprint": "x"}')
    with pytest.raises(FkdError, match="data.json: names no training rows"):
        read_oof(run_copy)
