"""The kernel bundle end to end, outside the repository: built, run as Kaggle runs it (single and split
layouts), in this project's environment and in one with Kaggle's package versions. Apart from
test_kernel.py so that `make test`'s two workers can share the long runs."""
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from test_kernel import REPO, config, no_kaggle_identity  # noqa: F401 - fixtures used here by name

from fkd.kaggle import bundle
from fkd.model.inputs import cpu_has_bf16


# ---------------------------------------------------------------- end to end, outside the repository

@pytest.fixture(scope="module")
def small_competition(tmp_path_factory) -> Path:
    from fkd.data.synth import write_competition
    # 128 rows: 2 folds of 64 give 2 steps an epoch at batch 32 (OneCycle needs more than 1 step)
    return write_competition(tmp_path_factory.mktemp("small-competition"), n_train=128, n_test=8, seed=1)


def kaggle_input(competition: Path, root: Path) -> Path:
    """root/facial-keypoints-detection/ laid out as on Kaggle: training.zip, test.zip, two csv files."""
    folder = root / "facial-keypoints-detection"
    folder.mkdir(parents=True)
    for stem in ("training", "test"):
        with zipfile.ZipFile(folder / f"{stem}.zip", "w", zipfile.ZIP_DEFLATED) as archive:
            archive.write(competition / f"{stem}.csv", f"{stem}.csv")
    for name in ("IdLookupTable.csv", "SampleSubmission.csv"):
        (folder / name).write_bytes((competition / name).read_bytes())
    return root


@pytest.fixture(scope="session")
def kaggle_python() -> Path:
    """The python of a virtual environment with Kaggle's versions (requirements-kaggle.txt), built once."""
    from fkd.kaggle import env as kaggle_env

    return kaggle_env.ensure()


@pytest.fixture(params=["project", "kaggle-versions"])
def bundle_python(request) -> str:
    """The bundle runs twice: in this project's environment and in one with Kaggle's package versions."""
    return sys.executable if request.param == "project" else str(request.getfixturevalue("kaggle_python"))


def run_bundle(script: Path, input_root: Path, working: Path, cwd: Path, python=sys.executable, **extra_env):
    """The script in a fresh Python whose cwd and PYTHONPATH hold no trace of the repository."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(FKD_KAGGLE_INPUT=str(input_root), FKD_KAGGLE_WORKING=str(working),
               FKD_CACHE_DIR=str(cwd / "cache"), CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1",
               MPLBACKEND="Agg", HOME=str(cwd / "home"), **extra_env)
    cwd.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([str(python), str(script)], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert str(REPO) not in result.stdout.split("fkd-kernel", 2)[1].split("\n")[0]  # the unpacked copy ran
    return result.stdout


def check_submission_cli(submission: Path, lookup: Path):
    result = subprocess.run([sys.executable, "-m", "fkd", "check-submission", str(submission),
                             "--lookup", str(lookup)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_mean_shape_bundle_builds(tmp_path):
    bundle.build(None, tmp_path / "kernel", mean_shape=True, username="alice")
    plan = eval((tmp_path / "kernel" / "fkd_kernel.py").read_text().split("PLAN = ", 1)[1].split("\n", 1)[0])
    assert plan["mean_shape"] is True and plan["mode"] == "single" and plan["members"] == []


def test_bundle_trains_and_submits_outside_the_repository(small_competition, config, tmp_path, bundle_python):
    """The built script alone: 2-fold cv (two fold processes as on a 2-GPU machine), blend, checked file."""
    input_root = kaggle_input(small_competition, tmp_path / "input")
    bundle.build(config, tmp_path / "kernel", folds=2, username="alice")
    working = tmp_path / "working"
    log = run_bundle(tmp_path / "kernel" / "fkd_kernel.py", input_root, working, tmp_path / "elsewhere",
                     python=bundle_python, FKD_KERNEL_GPUS="2")
    assert f"precision {'bf16' if cpu_has_bf16() else 'fp32'}" in log and "training images/s" in log   # auto on a CPU
    assert "[gpu0 tiny fold" in log and "[gpu1 tiny fold" in log and "fkd submit" in log
    run = working / "runs" / "tiny"
    assert {"fold0.pt", "fold1.pt", "oof.csv", "metrics.json", "test_pred.csv"} <= {p.name for p in run.iterdir()}
    check_submission_cli(working / "submission.csv", input_root / "facial-keypoints-detection" / "IdLookupTable.csv")


def test_split_kernels_train_folds_and_the_ensemble_blends_them(small_competition, config, tmp_path,
                                                               bundle_python):
    """Fold kernels one after the other, their outputs mounted as Kaggle does, then the ensemble kernel."""
    input_root = kaggle_input(small_competition, tmp_path / "input")
    manifest = bundle.build(config, tmp_path / "kernel", folds=2, split=True, username="alice")
    for entry in manifest["kernels"][:2]:
        working = tmp_path / f"working-{entry['dir']}"
        run_bundle(tmp_path / "kernel" / entry["dir"] / "fkd_kernel.py", input_root, working, tmp_path / "cwd",
                   python=bundle_python)
        assert sorted(p.name for p in (working / "runs" / "tiny").glob("*.pt")) == [f"{entry['dir']}.pt"]
        assert not (working / "submission.csv").exists()
        shutil.copytree(working, input_root / entry["id"].split("/")[1])  # /kaggle/input/<kernel slug>/
    working = tmp_path / "working-ensemble"
    log = run_bundle(tmp_path / "kernel" / "ensemble" / "fkd_kernel.py", input_root, working, tmp_path / "cwd",
                     python=bundle_python)
    assert "done already" in log and "fold 0 epoch" not in log  # gathered, not retrained
    assert (working / "runs" / "tiny" / "oof.csv").is_file()
    check_submission_cli(working / "submission.csv", input_root / "facial-keypoints-detection" / "IdLookupTable.csv")


def test_the_kaggle_environment_has_kaggles_versions(kaggle_python):
    """Every pinned package but torch/torchvision resolves to its pinned version inside the environment."""
    from fkd.kaggle import env as kaggle_env

    probe = ("import importlib, importlib.metadata as m, json, sys; "
             "names = json.loads(sys.argv[1]); "
             "print(json.dumps({n: [m.version(n), m.distribution(n).locate_file('').as_posix()] for n in names}))")
    pins = kaggle_env.pinned()
    result = subprocess.run([str(kaggle_python), "-c", probe, json.dumps(sorted(pins))], capture_output=True,
                            text=True, cwd="/")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    env = str(kaggle_python.parent.parent)
    for name, version in kaggle_env.installed_here().items():
        assert found[name][0] == version, f"{name} {found[name][0]}, not Kaggle's {version}"
        assert found[name][1].startswith(env), f"{name} comes from {found[name][1]}, not the Kaggle environment"
    assert set(pins) - set(kaggle_env.installed_here()) == set(kaggle_env.FROM_THE_PROJECT)


def test_folds_are_the_same_under_kaggles_scikit_learn(competition, kaggle_python):
    """Runs trained on Kaggle and here are blended on one set of folds, whatever scikit-learn each has."""
    import sklearn

    from fkd.data.competition import load_training
    from fkd.data.folds import make_folds

    script = ("import json, sys, sklearn; from fkd.data.competition import load_training; from fkd.data.folds import make_folds; "
              "images, keypoints = load_training(sys.argv[1]); "
              "print(sklearn.__version__, json.dumps(make_folds(images, keypoints, 5, 3).tolist()))")
    env = dict(os.environ, PYTHONPATH=str(REPO), FKD_CACHE_DIR=str(competition / "kaggle-cache"))
    result = subprocess.run([str(kaggle_python), "-c", script, str(competition)], capture_output=True, text=True,
                            env=env, cwd="/")
    assert result.returncode == 0, result.stderr
    version, folds = result.stdout.split(" ", 1)
    assert version == "1.6.1" and sklearn.__version__ != "1.6.1"
    images, keypoints = load_training(competition)
    assert json.loads(folds) == make_folds(images, keypoints, 5, 3).tolist()


# ---------------------------------------------------------------- several members in one push

@pytest.fixture
def two_members(config, tmp_path) -> list:
    """Two tiny members built differently (another seed, another net), on the same folds."""
    other = tmp_path / "cfg" / "tiny-b.yaml"
    other.write_text("base: tiny\nname: tiny-b\nmodel: seedcnn\nseed: 1\n")
    return [config, other]


def local_stack(lookup_folder: Path, run_dirs, out_dir: Path) -> Path:
    """What `make submit RUNS=... STACK=1` makes here from the run folders a kernel wrote."""
    result = subprocess.run([sys.executable, "-m", "fkd", "submit", "--data-dir", str(lookup_folder), "--runs",
                             *map(str, run_dirs), "--stack", "--name", "local", "--out-dir", str(out_dir)],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    [made] = out_dir.glob("*-local.csv")
    return made


def assert_same_submission(kernel_csv: Path, local_csv: Path):
    import pandas as pd

    kernel, local = pd.read_csv(kernel_csv), pd.read_csv(local_csv)
    assert (kernel["RowId"] == local["RowId"]).all()
    assert (kernel["Location"] - local["Location"]).abs().max() <= 1e-6


def test_one_push_trains_every_member_and_stacks_them(small_competition, two_members, tmp_path, bundle_python):
    """Two members x 2 folds on two (simulated) GPUs: each job once, then the stack, exactly as here."""
    input_root = kaggle_input(small_competition, tmp_path / "input")
    bundle.build(two_members, tmp_path / "kernel", folds=2, stack=True, username="alice")
    working = tmp_path / "working"
    log = run_bundle(tmp_path / "kernel" / "fkd_kernel.py", input_root, working, tmp_path / "elsewhere",
                     python=bundle_python, FKD_KERNEL_GPUS="2")
    for member in ("tiny", "tiny-b"):
        for k in range(2):
            assert len([line for line in log.splitlines() if f": {member} fold{k}: fkd cv" in line]) == 1
        assert f"member {member}: folds " in log and "OOF RMSE" in log
    assert "[gpu0 " in log and "[gpu1 " in log and "stack: OOF RMSE" in log and "stage 1 alone" in log
    competition = input_root / "facial-keypoints-detection"
    check_submission_cli(working / "submission.csv", competition / "IdLookupTable.csv")
    runs = [working / "runs" / "tiny", working / "runs" / "tiny-b"]
    assert_same_submission(working / "submission.csv", local_stack(competition, runs, tmp_path / "local"))


def test_split_kernels_of_several_members_and_their_stack(small_competition, two_members, tmp_path):
    """Each member's folds as their own kernels, their outputs mounted, then the ensemble kernel stacks them."""
    input_root = kaggle_input(small_competition, tmp_path / "input")
    manifest = bundle.build(two_members, tmp_path / "kernel", folds=2, split=True, stack=True, username="alice")
    folds = [e for e in manifest["kernels"] if e["role"] == "fold"]
    assert [e["dir"] for e in folds] == ["tiny-fold0", "tiny-fold1", "tiny-b-fold0", "tiny-b-fold1"]
    for entry in folds:
        working = tmp_path / f"working-{entry['dir']}"
        run_bundle(tmp_path / "kernel" / entry["dir"] / "fkd_kernel.py", input_root, working, tmp_path / "cwd")
        assert [p.name for p in (working / "runs" / entry["member"]).glob("*.pt")] == [f"fold{entry['fold']}.pt"]
        shutil.copytree(working, input_root / entry["id"].split("/")[1])  # /kaggle/input/<kernel slug>/
    working = tmp_path / "working-ensemble"
    log = run_bundle(tmp_path / "kernel" / "ensemble" / "fkd_kernel.py", input_root, working, tmp_path / "cwd")
    assert "done already" in log and " epoch 1/" not in log  # gathered, not retrained
    competition = input_root / "facial-keypoints-detection"
    check_submission_cli(working / "submission.csv", competition / "IdLookupTable.csv")
    runs = [working / "runs" / "tiny", working / "runs" / "tiny-b"]
    assert_same_submission(working / "submission.csv", local_stack(competition, runs, tmp_path / "local"))


def test_a_study_runs_inside_the_kernel_and_its_report_reads_back_here(small_competition, config, tmp_path):
    """fkd kernel --tune: the study's SQLite file is in the kernel's output; fkd tune --report reads it here."""
    space = tmp_path / "cfg" / "space.yaml"
    space.write_text("lr: {log: [1.0e-3, 5.0e-3]}\n")
    input_root = kaggle_input(small_competition, tmp_path / "input")
    bundle.build(config, tmp_path / "kernel", folds=2, username="alice",
                 tune={"space": space, "trials": 2, "on_folds": "0"})
    working = tmp_path / "working"
    log = run_bundle(tmp_path / "kernel" / "fkd_kernel.py", input_root, working, tmp_path / "elsewhere")
    assert "fkd tune" in log and "done: study space" in log
    assert "--timeout 600" in log  # no trial starts past 10 hours: Kaggle stops a kernel at 12
    output = tmp_path / "output-runs"
    shutil.copytree(working / "runs", output)  # what `make output` brings back
    result = subprocess.run([sys.executable, "-m", "fkd", "tune", "--report", "space", "--runs-dir", str(output),
                             "--configs-dir", str(config.parent)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "2 complete" in result.stdout and (config.parent / "space-best.yaml").is_file()
