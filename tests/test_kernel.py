"""The Kaggle kernel bundle: metadata rules, layout, the multi-GPU runner, and a self-contained run."""
import json
import os
import subprocess
import threading
import zipfile
from pathlib import Path

import pytest
import yaml

from fkd.core.config import load_config
from fkd.core.errors import FkdError
from fkd.core.lock import check_not_being_written
from fkd.kaggle import bundle, metadata, runner

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "configs" / "tiny.yaml"


@pytest.fixture(autouse=True)
def no_kaggle_identity(monkeypatch, tmp_path):
    """No username from the machine running the tests: HOME is empty, no KAGGLE_* variables."""
    for name in list(os.environ):
        if name.startswith("KAGGLE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "cfg" / "tiny.yaml"
    path.parent.mkdir()
    path.write_text(TINY_CONFIG.read_text() if TINY_CONFIG.is_file() else "model: lenet\nepochs: 1\nbatch_size: 32\n")
    return path


def good_meta(**changes):
    meta = {
        "id": "alice/fkd-facial-keypoints", "title": "fkd facial keypoints", "code_file": "fkd_kernel.py",
        "language": "python", "kernel_type": "script", "is_private": True, "enable_gpu": True,
        "machine_shape": "NvidiaTeslaT4", "enable_internet": False, "dataset_sources": [], "competition_sources": ["facial-keypoints-detection"],
        "kernel_sources": [],
    }
    meta.update(changes)
    return {k: v for k, v in meta.items() if v is not DROP}


DROP = object()


# ---------------------------------------------------------------- metadata

def test_repository_template_is_valid_and_explicit():
    meta = metadata.resolve_template(bundle.DEFAULT_TEMPLATE, "alice")
    assert meta["id"] == "alice/fkd-facial-keypoints"
    assert meta["language"] == "python" and meta["kernel_type"] == "script"
    assert meta["is_private"] is True and meta["enable_gpu"] is True and meta["enable_internet"] is False
    assert meta["competition_sources"] == ["facial-keypoints-detection"]
    assert meta["dataset_sources"] == [] and meta["kernel_sources"] == []
    raw = json.loads(bundle.DEFAULT_TEMPLATE.read_text())
    assert "{username}" in raw["id"] and "enable_internet" in raw  # written out, not left to a default
    assert meta["machine_shape"] == "NvidiaTeslaT4"  # enable_gpu alone may give a retired P100


@pytest.mark.parametrize("changes, key", [
    ({"enable_gpus": True}, "enable_gpus"),                 # a typo the kaggle CLI would ignore
    ({"title": "fkd"}, "title"),
    ({"title": DROP}, "title"),
    ({"id": "alice/fkd", "title": "fkd"}, "title"),
    ({"id": "alice/fkd1", "title": "fkd1 x"}, "id"),        # slug under five characters
    ({"id": "fkd-facial-keypoints"}, "id"),                 # no owner
    ({"id": "alice/fkd-facial-keypoints/3"}, "id"),         # a version
    ({"id": DROP}, "id"),
    ({"title": "Facial keypoints by fkd"}, "title"),        # title would give another slug
    ({"code_file": ""}, "code_file"),
    ({"language": "python3"}, "language"),
    ({"kernel_type": "kernel"}, "kernel_type"),
    ({"kernel_type": "notebook"}, "kernel_type"),           # a .py file is a script
    ({"is_private": "true"}, "is_private"),                 # booleans are booleans
    ({"enable_internet": 0}, "enable_internet"),
    ({"dataset_sources": "alice/timm-weights"}, "dataset_sources"),
    ({"dataset_sources": ["timm-weights"]}, "dataset_sources"),
    ({"kernel_sources": ["alice/fold"]}, "kernel_sources"),
    ({"competition_sources": "facial-keypoints-detection"}, "competition_sources"),
    ({"model_sources": ["alice/model/pytorch/default"]}, "model_sources"),
    ({"docker_image_pinning_type": "newest"}, "docker_image_pinning_type"),
    ({"machine_shape": DROP}, "machine_shape"),             # a GPU, but which one
    ({"machine_shape": "NvidiaTeslaP100"}, "machine_shape"),  # retired: sm_60 runs no Kaggle torch
    ({"machine_shape": "T4"}, "machine_shape"),
    ({"machine_shape": "TpuV5E8"}, "machine_shape"),        # a TPU for a GPU kernel
])
def test_metadata_rules_name_file_and_key(changes, key, tmp_path):
    path = tmp_path / "kernel-metadata.json"
    with pytest.raises(FkdError) as error:
        metadata.validate_metadata(good_meta(**changes), path)
    message = str(error.value)
    assert str(path) in message and repr(key) in message and "\n" not in message


def test_machine_shape_errors_list_the_accepted_values(tmp_path):
    with pytest.raises(FkdError, match=r"key 'machine_shape': \"T4\" is not one of NvidiaTeslaT4, TpuV5E8"):
        metadata.validate_metadata(good_meta(machine_shape="T4"), "m.json")
    with pytest.raises(FkdError, match=r"'NvidiaTeslaP100' is retired.*accepted: NvidiaTeslaT4"):
        metadata.validate_metadata(good_meta(machine_shape="NvidiaTeslaP100"), "m.json")
    metadata.validate_metadata(good_meta(enable_gpu=False, machine_shape=DROP), "m.json")  # a CPU kernel
    metadata.validate_metadata(good_meta(enable_gpu=False, enable_tpu=True, machine_shape="TpuV5E8"), "m.json")


def test_build_passes_another_machine_shape_and_refuses_a_bad_one(config, tmp_path):
    bundle.build(config, tmp_path / "k", username="alice", machine_shape="NvidiaTeslaT4")
    assert json.loads((tmp_path / "k" / "kernel-metadata.json").read_text())["machine_shape"] == "NvidiaTeslaT4"
    with pytest.raises(FkdError, match="^--machine-shape: 'NvidiaTeslaP100' is retired"):
        bundle.build(config, tmp_path / "bad", username="alice", machine_shape="NvidiaTeslaP100")
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("options, named", [
    ({"slug": "abc"}, "--slug"),                        # under five characters
    ({"slug": "a/bcdef"}, "--slug"),                    # a slug has no owner
    ({"slug": "fkd_run_one"}, "--slug"),                # its title gives another slug
    ({"title": "Foo bar baz"}, "--title"),              # gives another slug than the template's
    ({"machine_shape": "T4"}, "--machine-shape"),
    ({"machine_shape": "TpuV5E8"}, "--machine-shape"),  # a TPU for the template's GPU kernel
    ({"datasets": ["timm-weights"]}, "--dataset"),
])
def test_an_options_error_names_the_option_not_the_template(options, named, tmp_path):
    with pytest.raises(FkdError) as error:
        bundle.build(None, tmp_path / "k", username="alice", mean_shape=True, **options)
    message = str(error.value)
    assert message.startswith(f"{named}: ") and "kernel-metadata.json" not in message and "\n" not in message
    assert not (tmp_path / "k").exists()


def test_the_templates_own_error_still_names_the_template(tmp_path):
    template = tmp_path / "kernel-metadata.json"
    template.write_text(json.dumps(good_meta(id="{username}/fkd-facial-keypoints", machine_shape="T4")))
    with pytest.raises(FkdError, match=r"kernel-metadata.json: key 'machine_shape'"):
        bundle.build(None, tmp_path / "k", template=template, username="alice", mean_shape=True, slug="fkd-other-run")


def test_a_template_that_is_not_utf8_json_is_one_line_naming_it(tmp_path, capsys):
    from fkd.cli import main

    image = tmp_path / "some.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    assert main(["kernel", "--template", str(image), "--out", str(tmp_path / "k"), "--mean-shape",
                 "--username", "alice"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(image) in err and "UTF-8" in err, err
    assert not (tmp_path / "k").exists()
    (tmp_path / "built").mkdir()
    (tmp_path / "built" / metadata.METADATA).write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    with pytest.raises(FkdError, match="kernel-metadata.json: .*UTF-8"):
        metadata.load_metadata(tmp_path / "built")


@pytest.mark.parametrize("username", ["b o b", "", "alice/x"])
def test_a_username_that_cannot_be_kaggles_is_refused_naming_the_option(username, tmp_path):
    with pytest.raises(FkdError, match=f"^--username {username!r}: a Kaggle username is letters, digits and hyphens"):
        bundle.build(None, tmp_path / "k", username=username, mean_shape=True)
    assert not (tmp_path / "k").exists()


def test_real_usernames_pass_and_a_bad_one_names_where_it_came_from(tmp_path, monkeypatch):
    for username in ("alice", "bob-2", "Ryan99", "a"):
        manifest = bundle.build(None, tmp_path / username, username=username, mean_shape=True)
        assert manifest["kernels"][0]["id"] == f"{username}/fkd-facial-keypoints"
    monkeypatch.setenv("KAGGLE_USERNAME", "b o b")
    with pytest.raises(FkdError, match=r"^\$KAGGLE_USERNAME 'b o b'"):
        bundle.build(None, tmp_path / "k", mean_shape=True)


def test_make_push_passes_the_machine_shape():
    result = subprocess.run(["make", "-n", "push", "MACHINE=NvidiaTeslaT4"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "--machine-shape NvidiaTeslaT4" in result.stdout
    assert "--machine-shape" not in subprocess.run(["make", "-n", "push"], cwd=REPO, capture_output=True,
                                                   text=True).stdout


def test_metadata_good_and_code_file_must_exist(tmp_path):
    metadata.validate_metadata(good_meta(), "m.json")
    metadata.validate_metadata(good_meta(dataset_sources=["alice/timm-weights"], keywords=["gpu"]), "m.json")
    with pytest.raises(FkdError, match="code_file"):
        metadata.validate_metadata(good_meta(), "m.json", folder=tmp_path)
    (tmp_path / "fkd_kernel.py").write_text("print(1)\n")
    metadata.validate_metadata(good_meta(), "m.json", folder=tmp_path)


def test_unknown_key_in_template_stops_the_build(config, tmp_path):
    template = tmp_path / "kernel-metadata.json"
    template.write_text(json.dumps(good_meta(enable_internett=False)))
    with pytest.raises(FkdError, match=r"kernel-metadata.json: key 'enable_internett'.*enable_internet"):
        bundle.build(config, tmp_path / "out", template=template)
    assert not (tmp_path / "out" / bundle.SCRIPT_NAME).exists()


# ---------------------------------------------------------------- layout

def test_single_bundle_layout(config, tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    out = tmp_path / "kernel"
    manifest = bundle.build(config, out, folds=3)
    meta = json.loads((out / "kernel-metadata.json").read_text())
    assert meta["id"] == "alice/fkd-facial-keypoints" and meta["code_file"] == "fkd_kernel.py"
    assert meta["enable_internet"] is False and meta["enable_gpu"] is True and meta["is_private"] is True
    assert manifest["kernels"] == [{"role": "single", "dir": ".", "id": "alice/fkd-facial-keypoints"}]
    script = (out / "fkd_kernel.py").read_text()
    shipped = yaml.safe_load(shipped_configs(out / "fkd_kernel.py")["tiny.yaml"])
    assert shipped == load_config(config, folds=3)  # the config travels inside, resolved
    # the same sources give the same bytes (nothing time-dependent inside)
    first = (out / "fkd_kernel.py").read_bytes()
    bundle.build(config, out, folds=3)
    assert (out / "fkd_kernel.py").read_bytes() == first
    [entry] = bundle.read_manifest(out)
    assert entry["id"] == "alice/fkd-facial-keypoints" and entry["dir"] == out


def shipped_configs(script: Path) -> dict:
    return eval(script.read_text().split("CONFIGS = ", 1)[1].split("\n", 1)[0])


def shipped_plan(script: Path) -> dict:
    return eval(script.read_text().split("PLAN = ", 1)[1].split("\n", 1)[0])


def test_bundle_carries_the_whole_package(config, tmp_path):
    out = tmp_path / "kernel"
    bundle.build(config, out)
    names = zipfile.ZipFile(__import__("io").BytesIO(bundle.package_zip())).namelist()
    expected = sorted("fkd/" + p.relative_to(REPO / "fkd").as_posix() for p in (REPO / "fkd").rglob("*.py")
                      if "__pycache__" not in p.parts)
    assert names == expected and "fkd/cli.py" in names and "fkd/kaggle/runner.py" in names


def test_placeholder_without_username(config, tmp_path, capsys):
    from fkd.cli import main
    assert main(["kernel", "--config", str(config), "--out", str(tmp_path / "k")]) == 0
    meta = json.loads((tmp_path / "k" / "kernel-metadata.json").read_text())
    assert meta["id"] == f"{metadata.USERNAME_PLACEHOLDER}/fkd-facial-keypoints"
    assert "placeholder" in capsys.readouterr().out


def test_username_from_kaggle_json_never_the_key(config, tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "conf"))
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "kaggle.json").write_text('{"username": "bob", "key": "0123456789abcdef"}')
    manifest = bundle.build(config, tmp_path / "k")
    assert manifest["kernels"][0]["id"] == "bob/fkd-facial-keypoints"
    assert "0123456789abcdef" not in (tmp_path / "k" / "kernel-metadata.json").read_text()


def test_split_layout_and_rebuild_clears_the_old_one(config, tmp_path):
    out = tmp_path / "kernel"
    bundle.build(config, out, folds=3, username="alice", datasets=["alice/timm-weights"])
    assert (out / "fkd_kernel.py").is_file()
    manifest = bundle.build(config, out, folds=3, split=True, username="alice")
    assert not (out / "fkd_kernel.py").exists() and not (out / "kernel-metadata.json").exists()
    assert [e["dir"] for e in manifest["kernels"]] == ["fold0", "fold1", "fold2", "ensemble"]
    fold_ids = [f"alice/fkd-facial-keypoints-fold{k}" for k in range(3)]
    for k in range(3):
        meta = json.loads((out / f"fold{k}" / "kernel-metadata.json").read_text())
        assert meta["id"] == fold_ids[k] and meta["title"] == f"fkd facial keypoints fold{k}"
        assert meta["kernel_sources"] == []
        plan = shipped_plan(out / f"fold{k}" / "fkd_kernel.py")
        assert plan["mode"] == "fold" and plan["fold"] == k and plan["folds"] == 3 and plan["member"] == "tiny"
    ens = json.loads((out / "ensemble" / "kernel-metadata.json").read_text())
    assert ens["id"] == "alice/fkd-facial-keypoints-ensemble"
    assert ens["kernel_sources"] == fold_ids
    assert ens["competition_sources"] == ["facial-keypoints-detection"]
    assert [k["role"] for k in bundle.read_manifest(out)] == ["fold", "fold", "fold", "ensemble"]


def test_slug_option_and_missing_config(config, tmp_path):
    manifest = bundle.build(config, tmp_path / "k", username="alice", slug="fkd-resnet-run")
    meta = json.loads((tmp_path / "k" / "kernel-metadata.json").read_text())
    assert manifest["kernels"][0]["id"] == meta["id"] == "alice/fkd-resnet-run"
    assert meta["title"] == "fkd resnet run"
    with pytest.raises(FkdError, match="no such config"):
        bundle.build(tmp_path / "absent.yaml", tmp_path / "k2")


def test_config_is_checked_at_build_time_and_gives_folds_and_name(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 1\nepochz: 2\n")
    with pytest.raises(FkdError, match="epochz"):
        bundle.build(bad, tmp_path / "k")
    assert not (tmp_path / "k" / "fkd_kernel.py").exists()
    good = tmp_path / "good.yaml"
    good.write_text("name: resnet-a\nfolds: 3\nepochs: 1\n")
    manifest = bundle.build(good, tmp_path / "k", split=True, username="alice")
    assert manifest["folds"] == 3 and manifest["name"] == "resnet-a"
    assert [e["dir"] for e in manifest["kernels"]] == ["fold0", "fold1", "fold2", "ensemble"]


def fold_output(root: Path, slug: str, k: int, config: dict):
    run = root / slug / "runs" / "tiny"
    run.mkdir(parents=True)
    (run / f"fold{k}.pt").write_bytes(b"weights %d" % k)
    (run / "config.json").write_text(json.dumps(dict(config, only_folds=[k])))


def test_ensemble_gathers_fold_checkpoints(tmp_path):
    inputs = tmp_path / "input"
    for k in range(2):
        fold_output(inputs, f"fkd-facial-keypoints-fold{k}", k, {"name": "tiny", "epochs": 1})
    run_dir = tmp_path / "working" / "runs" / "tiny"
    paths = runner.gather_fold_checkpoints(inputs, "tiny", 2, run_dir)
    assert paths == [run_dir / "fold0.pt", run_dir / "fold1.pt"]
    assert (run_dir / "fold1.pt").read_bytes() == b"weights 1" and (run_dir / "config.json").is_file()
    with pytest.raises(RuntimeError, match=r"folds \[2\]"):
        runner.gather_fold_checkpoints(inputs, "tiny", 3, tmp_path / "other", sources=["a/b"])


def test_ensemble_refuses_folds_of_different_configs(tmp_path):
    inputs = tmp_path / "input"
    fold_output(inputs, "fkd-facial-keypoints-fold0", 0, {"name": "tiny", "epochs": 1})
    fold_output(inputs, "fkd-facial-keypoints-fold1", 1, {"name": "tiny", "epochs": 2})
    with pytest.raises(RuntimeError, match="different configs"):
        runner.gather_fold_checkpoints(inputs, "tiny", 2, tmp_path / "run")


# ---------------------------------------------------------------- the runner's GPU logic

def test_jobs_run_concurrently_one_process_per_gpu(tmp_path):
    barrier = threading.Barrier(2, timeout=10)  # the first two jobs must be running at the same time
    calls, lock = [], threading.Lock()

    def launch(argv, env, prefix):
        with lock:
            calls.append((list(argv), env["CUDA_VISIBLE_DEVICES"], env["PYTHONPATH"], prefix,
                          env["FKD_RUN_LOCK_HOLDER"]))
            first_two = len(calls) <= 2
        if first_two:
            barrier.wait()
        return 0

    jobs = [(f"{m} fold{k}", ["cv", "--name", m, "--only-fold", str(k)]) for m in ("a", "b") for k in range(3)]
    runner.train_jobs_parallel(jobs, 2, tmp_path / "bundle", launch=launch)
    assert sorted((c[0][2], c[0][-1]) for c in calls) == [(m, str(k)) for m in ("a", "b") for k in range(3)]
    assert {c[1] for c in calls} == {"0", "1"}
    assert all(c[2].split(os.pathsep)[0] == str(tmp_path / "bundle") for c in calls)
    assert {c[4] for c in calls} == {str(os.getpid())}  # the jobs write under the runner's locks


def test_failed_fold_process_stops_the_kernel(tmp_path):
    def launch(argv, env, prefix):
        return 1 if argv[-1] == "1" else 0

    with pytest.raises(RuntimeError, match="a fold1"):
        runner.train_jobs_parallel([(f"a fold{k}", ["cv", str(k)]) for k in (0, 1)], 2, tmp_path, launch=launch)


def test_runner_shares_the_gpus_among_every_members_folds_then_gathers_and_stacks(tmp_path, monkeypatch, competition):
    """kernel_main on a faked 2-GPU machine: every member x fold job once, then one cv per member to
    gather, then one submit of all members, stacked."""
    monkeypatch.setenv("FKD_KAGGLE_INPUT", str(competition.parent))
    monkeypatch.setenv("FKD_KAGGLE_WORKING", str(tmp_path / "working"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(runner, "cuda_device_count", lambda: 2)
    parallel, commands = [], []

    def jobs_parallel(jobs, n, root):
        for member in ("a", "b"):  # the runner holds each member's lock while its jobs run
            with pytest.raises(FkdError, match="being written"):
                check_not_being_written(tmp_path / "working" / "runs" / member)
        parallel.append((jobs, n))

    monkeypatch.setattr(runner, "train_jobs_parallel", jobs_parallel)
    monkeypatch.setattr(runner, "member_summary", lambda run_dir: f"member {Path(run_dir).name}")

    def command(argv, bundle_root=None):
        commands.append([str(a) for a in argv])
        if argv[0] == "submit":
            out = Path(argv[argv.index("--out-dir") + 1])
            out.mkdir(parents=True, exist_ok=True)
            (out / "20240101T000000Z-a+b.csv").write_text("RowId,Location\n")

    monkeypatch.setattr(runner, "fkd_command", command)
    members = [{"name": m, "config": f"{m}.yaml", "description": ""} for m in ("a", "b")]
    plan = {"mode": "single", "name": "a+b", "folds": 3, "members": members, "stack": True, "internet": False}
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    assert runner.kernel_main(plan, {"a.yaml": "epochs: 1\n", "b.yaml": "epochs: 2\n"}, bundle) == 0
    [(jobs, n)] = parallel
    assert n == 2 and sorted(label for label, _ in jobs) == [f"{m} fold{k}" for m in ("a", "b") for k in range(3)]
    assert all(argv[-2] == "--only-fold" and str(argv[-1]) == label[-1] for label, argv in jobs)
    assert [c[0] for c in commands] == ["cv", "cv", "submit", "check-submission"]
    assert [c[c.index("--name") + 1] for c in commands[:2]] == ["a", "b"]
    submit = commands[2]
    runs = submit[submit.index("--runs") + 1:submit.index("--stack")]
    assert runs == [str(tmp_path / "working" / "runs" / m) for m in ("a", "b")]
    assert (bundle / "b.yaml").read_text() == "epochs: 2\n"
    assert (tmp_path / "working" / "submission.csv").is_file()


def test_the_bundle_carries_the_resolved_config_not_its_base(tmp_path):
    """A delta config and a --set: the kernel holds the merged values, so no base file is needed there."""
    from fkd.core.config import load_config

    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "root.yaml").write_text("model: lenet\nepochs: 3\nbatch_size: 32\n")
    (folder / "leaf.yaml").write_text("base: root\nseed: 7\n")
    bundle.build(folder / "leaf.yaml", tmp_path / "k", username="alice", sets=["epochs=2"])
    script = (tmp_path / "k" / "fkd_kernel.py").read_text()
    text = shipped_configs(tmp_path / "k" / "fkd_kernel.py")["leaf.yaml"]
    shipped = tmp_path / "elsewhere" / "leaf.yaml"
    shipped.parent.mkdir()
    shipped.write_text(text)
    config = load_config(shipped)
    assert (config["model"], config["seed"], config["epochs"], config["name"]) == ("lenet", 7, 2, "leaf")
    assert config == load_config(folder / "leaf.yaml", sets=["epochs=2"])
    assert 'COMMIT = "' in script


# ---------------------------------------------------------------- several members

def test_no_config_ships_the_measured_pair_stacked(tmp_path):
    manifest = bundle.build(None, tmp_path / "k", username="alice")
    assert [m["name"] for m in manifest["members"]] == ["stem-regression", "stem-heatmap"] and manifest["stack"]
    plan = shipped_plan(tmp_path / "k" / "fkd_kernel.py")
    assert plan["stack"] is True and [m["name"] for m in plan["members"]] == ["stem-regression", "stem-heatmap"]
    shipped = shipped_configs(tmp_path / "k" / "fkd_kernel.py")
    for member in ("stem-regression", "stem-heatmap"):
        assert yaml.safe_load(shipped[f"{member}.yaml"])["precision"] == "auto"  # fp16 on a T4, bf16 on newer


def test_members_that_cannot_be_stacked_together_are_refused_before_anything_is_written(config, tmp_path):
    other = tmp_path / "cfg" / "other.yaml"
    other.write_text("base: tiny\nname: other\nfold_seed: 1\n")
    with pytest.raises(FkdError, match="different folds.*fold_seed 1"):
        bundle.build([config, other], tmp_path / "k")
    twin = tmp_path / "cfg" / "twin.yaml"
    twin.write_text("base: tiny\nseed: 4\nname: tiny\n")
    with pytest.raises(FkdError, match="two members are named 'tiny'"):
        bundle.build([config, twin], tmp_path / "k")
    with pytest.raises(FkdError, match="no such config"):
        bundle.build([config, tmp_path / "absent.yaml"], tmp_path / "k")
    forced = tmp_path / "cfg" / "forced.yaml"
    forced.write_text("base: tiny\nname: forced\nprecision: bf16\n")
    with pytest.raises(FkdError, match="forced.yaml.*NvidiaTeslaT4 cannot train in"):
        bundle.build([config, forced], tmp_path / "k")
    assert not (tmp_path / "k").exists()


def test_stack_with_one_member_says_what_it_does(config, tmp_path, capsys):
    from fkd.cli import main
    assert main(["kernel", "--config", str(config), "--stack", "--out", str(tmp_path / "k")]) == 0
    assert "stacks that run alone" in capsys.readouterr().out
    assert shipped_plan(tmp_path / "k" / "fkd_kernel.py")["stack"] is True


def test_the_bundle_never_writes_over_kernel_files_it_did_not_write(config, tmp_path):
    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / "kernel-metadata.json").write_text('{"mine": true}')
    with pytest.raises(FkdError, match="did not write"):
        bundle.build(config, folder, username="alice")
    assert (folder / "kernel-metadata.json").read_text() == '{"mine": true}'
    bundle.build(config, tmp_path / "k", username="alice")
    bundle.build(config, tmp_path / "k", username="alice")  # its own earlier bundle is replaced


def test_split_names_each_members_fold_kernels(config, tmp_path):
    other = tmp_path / "cfg" / "other.yaml"
    other.write_text("base: tiny\nname: other\nseed: 1\n")
    manifest = bundle.build([config, other], tmp_path / "k", folds=2, split=True, username="alice")
    ids = [e["id"] for e in manifest["kernels"]]
    assert ids == [f"alice/fkd-facial-keypoints-{m}-fold{k}" for m in ("tiny", "other") for k in (0, 1)] + [
        "alice/fkd-facial-keypoints-ensemble"]
    ensemble = json.loads((tmp_path / "k" / "ensemble" / "kernel-metadata.json").read_text())
    assert ensemble["kernel_sources"] == ids[:-1]
    assert shipped_plan(tmp_path / "k" / "ensemble" / "fkd_kernel.py")["stack"] is False
    assert set(shipped_configs(tmp_path / "k" / "other-fold1" / "fkd_kernel.py")) == {"other.yaml"}
