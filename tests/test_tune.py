"""fkd tune: studies whose trials are fkd runs, on SQLite here and on a real PostgreSQL server."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from fkd.cli import main
from fkd.core.config import load_config
from fkd.core.errors import FkdError
from fkd.data.competition import load_training
from fkd.train import checkpoint
from fkd.train.cv import run_cv
from fkd.tune import study as tuning
from fkd.tune.command import add_arguments, setup_of

REPO = Path(__file__).resolve().parents[1]
BASE = "model: lenet\nfolds: 2\nepochs: {epochs}\nbatch_size: 32\nprecision: fp32\naugment: {{flip: 0.5, rotate: 5}}\n"
SPACE = "lr: {log: [1.0e-3, 5.0e-3]}\naugment.rotate: {int: [0, 10]}\nloss: {choice: [mse, l1]}\n"


def recipe(folder: Path, epochs=3, space=SPACE) -> tuple:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "base.yaml").write_text(BASE.format(epochs=epochs))
    (folder / "space.yaml").write_text(space)
    return folder / "base.yaml", folder / "space.yaml"


def tune(competition, base, space, runs, *extra) -> int:
    return main(["tune", "--config", str(base), "--space", str(space), "--data-dir", str(competition),
                 "--runs-dir", str(runs), "--configs-dir", str(base.parent), *extra])


def load(runs, name="space"):
    return optuna.load_study(study_name=name, storage=tuning.storage_url(None, runs / name))


def test_a_study_of_tiny_trials_continues_and_its_best_config_reproduces_its_best_run(competition, tmp_path):
    base, space = recipe(tmp_path / "recipes")
    runs = tmp_path / "runs"
    assert tune(competition, base, space, runs, "--trials", "3", "--pruner", "none") == 0
    study = load(runs)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 3
    _, truth = load_training(competition)
    for trial in complete:  # a trial's value is the figure its run reports for fold 0
        kept = checkpoint.load(Path(trial.user_attrs["run"]) / "fold0.pt")
        assert trial.value == pytest.approx(kept["val_rmse"], abs=1e-9)
        assert not (Path(trial.user_attrs["run"]) / "fold1.pt").exists()

    stamps = {p.name: p.stat().st_mtime_ns for p in (runs / "space").glob("trial-*/fold0.pt")}
    assert tune(competition, base, space, runs, "--trials", "3", "--pruner", "none") == 0   # nothing to do
    assert {p.name: p.stat().st_mtime_ns for p in (runs / "space").glob("trial-*/fold0.pt")} == stamps
    assert tune(competition, base, space, runs, "--trials", "4", "--pruner", "none") == 0   # one more
    assert len(load(runs).get_trials(states=(TrialState.COMPLETE,))) == 4
    assert {p.name: p.stat().st_mtime_ns for p in (runs / "space").glob("trial-*/fold0.pt")
            if p.parent.name in {f"trial-{t.number:04d}" for t in complete}} == stamps

    best = load(runs).best_trial
    best_config = base.parent / "space-best.yaml"
    assert best_config.is_file() and (runs / "space" / "report.md").is_file() and (runs / "space" / "values.png").is_file()
    trained = json.loads((Path(best.user_attrs["run"]) / "config.json").read_text())
    rerun = run_cv(competition, load_config(best_config, name="again", only_folds=[0]), tmp_path / "again")
    retrained = json.loads((rerun / "config.json").read_text())
    assert checkpoint.trained_settings(retrained) == checkpoint.trained_settings(trained)
    assert checkpoint.load(rerun / "fold0.pt")["val_rmse"] == pytest.approx(best.value, abs=1e-4)


def test_the_best_trials_own_run_goes_on_to_every_fold_with_the_best_config(competition, tmp_path, capsys):
    base, space = recipe(tmp_path / "recipes")
    runs = tmp_path / "runs"
    assert tune(competition, base, space, runs, "--trials", "1", "--pruner", "none") == 0
    trial_run = Path(load(runs).best_trial.user_attrs["run"])
    fold0 = trial_run / "fold0.pt"
    stamp = fold0.stat().st_mtime_ns
    assert main(["cv", "--config", str(base.parent / "space-best.yaml"), "--runs-dir", str(runs / "space"),
                 "--name", trial_run.name, "--data-dir", str(competition)]) == 0
    assert "fold 0: done already" in capsys.readouterr().out and fold0.stat().st_mtime_ns == stamp
    assert (trial_run / "fold1.pt").is_file() and (trial_run / "oof.csv").is_file()


def test_a_timeout_starts_no_new_trial_and_the_same_command_goes_on(competition, tmp_path, capsys):
    base, space = recipe(tmp_path / "recipes")
    runs = tmp_path / "runs"
    assert tune(competition, base, space, runs, "--trials", "3", "--pruner", "none", "--timeout", "0.001",
                "--no-report") == 0
    assert len(load(runs).get_trials(states=(TrialState.COMPLETE,))) == 1  # the first trial always starts
    assert "--timeout 0.001 min: no new trial started; the study holds 1 finished of 3" in capsys.readouterr().out
    assert tune(competition, base, space, runs, "--trials", "3", "--pruner", "none", "--no-report") == 0
    trials = load(runs).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3


def test_a_diverging_trial_is_pruned_before_its_last_epoch(competition, tmp_path):
    base, space = recipe(tmp_path / "recipes", epochs=8, space="lr: {log: [1.0e-3, 10.0]}\n")
    runs = tmp_path / "runs"
    study = optuna.create_study(study_name="space", storage=tuning.open_storage(tuning.storage_url(None, runs / "space")))
    for lr in (2e-3, 3e-3, 4e-3, 10.0):  # three sound trials for the median, then one far too fast
        study.enqueue_trial({"lr": lr})
    assert tune(competition, base, space, runs, "--trials", "4") == 0
    trials = load(runs).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3 + [TrialState.PRUNED]
    assert trials[3].params["lr"] == 10.0 and 30 <= trials[3].last_step < 100  # percent of its schedule
    pruned = json.loads((Path(trials[3].user_attrs["run"]) / "pruned.json").read_text())
    assert pruned["step"] == trials[3].last_step and pruned["epoch"] < 8 and "behind" in pruned["why"]


@pytest.mark.parametrize("space, named", [
    ("lrr: {log: [1.0e-4, 1.0e-2]}\n", "lrr"),                       # an unknown key
    ("lr: {log: [0.0, 1.0e-2]}\n", "above 0"),                      # a log range from 0
    ("augment.flip: {float: [0.0, 2.0]}\n", "augment.flip"),         # past what the key allows
    ("loss: {choice: []}\n", "non-empty"),                           # an empty choice
    ("loss: {choice: [mse, hinge]}\n", "hinge"),                      # a choice the key refuses
    ("model_options.widthz: {choice: [[8, 16]]}\n", "widthz"),      # a model option the net does not take
    ("lr: [1.0e-4, 1.0e-2]\n", "expected one of"),                  # no kind
    ("name: {choice: [a, b]}\n", "fkd tune's to set"),
])
def test_a_bad_space_is_one_line_and_nothing_is_made(competition, tmp_path, capsys, space, named):
    base, path = recipe(tmp_path / "recipes", space=space)
    assert tune(competition, base, path, tmp_path / "runs") == 2
    err = capsys.readouterr().err.strip()
    assert named in err and str(path) in err and len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("storage, named", [
    ("not a url at all", "not a database URL"),
    ("redis://localhost:6379/0", "'redis'"),
    (f"postgresql://nobody@127.0.0.1:{1}/none", "cannot open it"),
])
def test_a_bad_storage_url_is_one_line_and_no_study_is_made(competition, tmp_path, capsys, storage, named):
    base, space = recipe(tmp_path / "recipes")
    assert tune(competition, base, space, tmp_path / "runs", "--storage", storage) == 2
    err = capsys.readouterr().err.strip()
    assert named in err and len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists() and not list(tmp_path.glob("recipes/*-best.yaml"))


def test_the_light_commands_never_import_optuna():
    code = ("import sys; from fkd.cli import main\n"
            "for argv in (['--help'], ['config'], ['submit', '--help'], ['check-submission', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print(sorted(m for m in ('optuna', 'sqlalchemy', 'psycopg') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stderr


# ---------------------------------------------------------------- several workers on a real PostgreSQL server

def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def postgres():
    """A PostgreSQL server of its own in a temporary folder, on a free port; stopped afterwards."""
    programs = [shutil.which(p) for p in ("initdb", "pg_ctl", "postgres")]
    if not all(programs):
        pytest.skip("PostgreSQL's server programs (initdb, pg_ctl, postgres) are not installed here")
    folder = Path(tempfile.mkdtemp(prefix="fkd-postgres-"))  # not under pytest's folders, which only root may enter
    run_as = {}
    if os.geteuid() == 0:  # initdb refuses to run as root: the server runs as an unprivileged user
        import pwd

        user = next((u for u in ("postgres", "nobody") if _has_user(u)), None)
        if user is None:
            pytest.skip("running as root and no unprivileged user (postgres, nobody) to run PostgreSQL as")
        entry = pwd.getpwnam(user)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
        run_as = {"user": entry.pw_uid, "group": entry.pw_gid}
    port = _free_port()
    data = folder / "data"
    subprocess.run([programs[0], "-D", str(data), "-U", "fkd", "--auth=trust", "-E", "UTF8"], check=True,
                   capture_output=True, **run_as)
    subprocess.run([programs[1], "-D", str(data), "-l", str(folder / "log"), "-w", "-o",
                    f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start"], check=True, capture_output=True,
                   **run_as)
    try:
        yield f"postgresql://fkd@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([programs[1], "-D", str(data), "-m", "immediate", "stop"], capture_output=True, **run_as)
        shutil.rmtree(folder, ignore_errors=True)


def _has_user(name) -> bool:
    import pwd
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def test_two_workers_share_a_postgresql_study_and_a_killed_workers_trial_is_retried(competition, tmp_path, postgres):
    base, space = recipe(tmp_path / "recipes", epochs=30)
    runs = tmp_path / "runs"
    command = [sys.executable, "-m", "fkd", "tune", "--config", str(base), "--space", str(space),
               "--data-dir", str(competition), "--runs-dir", str(runs), "--configs-dir", str(base.parent),
               "--storage", postgres, "--trials", "4", "--heartbeat", "1", "--pruner", "none"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    doomed = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline, line = time.time() + 120, ""
    while " epoch 3/30" not in line and time.time() < deadline:  # its first trial is well under way
        line = doomed.stdout.readline()
    assert doomed.poll() is None, "the first worker finished its trial before it could be killed"
    other = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    out, _ = other.communicate(timeout=600)
    assert other.returncode == 0, out[-3000:]

    study = optuna.load_study(study_name="space", storage=tuning.storage_url(postgres, runs / "space"))
    trials = study.get_trials()
    [failed] = [t for t in trials if t.state == TrialState.FAIL]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 4 and not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    folders = [t.user_attrs["run"] for t in complete]
    assert len(set(folders)) == 4  # every trial ran once, in its own folder
    [retry] = [t for t in complete if t.system_attrs.get("failed_trial") == failed.number]
    assert retry.params == failed.params and retry.user_attrs["run"] == failed.user_attrs["run"]
    assert "resuming after epoch" in out and "no longer running" in out  # the dead worker's fold went on


def test_workers_on_one_machine_share_the_sqlite_study(competition, tmp_path):
    base, space = recipe(tmp_path / "recipes")
    runs = tmp_path / "runs"
    result = subprocess.run([sys.executable, "-m", "fkd", "tune", "--config", str(base), "--space", str(space),
                             "--data-dir", str(competition), "--runs-dir", str(runs), "--configs-dir", str(base.parent),
                             "--trials", "3", "--workers", "2"], cwd=REPO, capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    trials = load(runs).get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) >= 3 and len({t.user_attrs["run"] for t in complete}) == len(complete)
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING, TrialState.FAIL)]


def test_a_new_studys_first_trial_is_the_base_config(competition, tmp_path):
    base, space = recipe(tmp_path / "recipes", space="lr: {log: [1.0e-3, 5.0e-3]}\nloss: {choice: [l1, mse]}\n")
    runs = tmp_path / "runs"
    assert tune(competition, base, space, runs, "--trials", "1", "--pruner", "none") == 0
    [first] = load(runs).get_trials()
    assert first.params == {"lr": 2e-3, "loss": "mse"} and first.user_attrs["baseline"] is True


def test_a_kernel_study_is_checked_when_the_kernel_is_built(competition, tmp_path, capsys):
    from fkd.kaggle import bundle

    base, space = recipe(tmp_path / "recipes")
    for tune_options, named in (({"on_folds": "9"}, "--on-folds 9"), ({"storage": "redis://x"}, "'redis'"),
                                ({"trials": 0}, "--trials")):
        with pytest.raises(FkdError, match=named):
            bundle.build(base, tmp_path / "k", username="alice",
                         tune={"space": space, "trials": 2, "on_folds": "0", **tune_options})
    assert not (tmp_path / "k").exists()
    with pytest.raises(SystemExit):
        main(["tune", "--config", str(base), "--space", str(space), "--heartbeat", "0"])
    assert "--heartbeat" in capsys.readouterr().err
