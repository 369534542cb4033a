"""Every named recipe in configs/ loads over the defaults and builds a model that maps faces to 30 values."""
import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from fkd.core.config import load_config
from fkd.model.inputs import forward
from fkd.model.nets import build_model, check_model_options

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_the_named_recipes_exist():
    names = {path.stem for path in CONFIGS}
    assert {"seed", "seedcnn", "lenet", "cpu", "gpu", "demo", "tiny"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_builds_a_working_model(path):
    config = load_config(path)
    assert config["name"] == path.stem and config["description"]   # every stem is a safe run name
    check_model_options(config)
    model = build_model(config["model"], subset_heads=config["subset_heads"], **config["model_options"]).eval()
    with torch.no_grad():
        out = forward(model, torch.rand(2, 1, 96, 96), torch.tensor([0, 1]))
    assert out.shape == (2, 30) and torch.isfinite(out).all()


@pytest.mark.parametrize("setting, message", [
    ({"loss": "huber"}, r"key 'loss': 'huber' is not one of mse, l1, smooth_l1, wing"),
    ({"epochs": "four"}, r"key 'epochs': 'four' is not a whole number"),
    ({"epochs": 0}, r"key 'epochs': 0 is out of range"),
    ({"epochs": True}, r"key 'epochs': True is not a whole number"),
    ({"device": "gpu"}, r"key 'device': 'gpu' is not one of auto, cpu, cuda"),
    ({"lr": -1}, r"key 'lr': -1 is out of range: must be > 0"),
    ({"schedule": "cosin"}, r"key 'schedule': 'cosin' is not one of onecycle, cosine, constant"),
    ({"optimizer": "sgd"}, r"key 'optimizer': 'sgd' is not one of adamw, adam"),
    ({"folds": 1}, r"key 'folds': 1 is out of range"),
    ({"folds": 0}, r"key 'folds': 0 is out of range"),
    ({"only_folds": [7], "folds": 2}, r"key 'only_folds': fold 7 does not exist with 2 folds"),
    ({"keep": "best-ish"}, r"key 'keep'.*last, best"),
    ({"precision": "half"}, r"key 'precision'.*auto, bf16, fp16, fp32"),
    ({"augment": {"flip": 2}}, r"key 'augment'.*probability"),
    ({"tta_scales": []}, r"key 'tta_scales'"),
    ({"model": "resnet34"}, r"key 'model': 'resnet34' is not one of lenet, seedcnn, convnet, timm:<name>"),
    ({"drop_label_outliers": 0.7}, r"key 'drop_label_outliers'"),
])
def test_every_bad_value_is_refused_when_the_config_loads(setting, message, tmp_path):
    from fkd.core.errors import FkdError

    with pytest.raises(FkdError, match=message):
        load_config(None, **setting)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(setting))
    with pytest.raises(FkdError) as error:
        load_config(path)
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)


def test_a_misspelt_key_gets_a_suggestion(tmp_path):
    from fkd.core.errors import FkdError

    path = tmp_path / "typo.yaml"
    path.write_text("epoch: 4\n")
    with pytest.raises(FkdError, match=r"unknown key 'epoch' \(did you mean 'epochs'\?"):
        load_config(path)


def test_bad_values_stop_cv_and_kernel_before_anything_is_written(competition, tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text("model: lenet\nloss: huber\n")
    repo = Path(__file__).resolve().parents[1]
    for argv in (["cv", "--data-dir", str(competition), "--config", str(bad), "--runs-dir", str(tmp_path / "runs")],
                 ["cv", "--data-dir", str(competition), "--config", str(repo / "configs" / "tiny.yaml"),
                  "--epochs", "0", "--runs-dir", str(tmp_path / "runs")],
                 ["kernel", "--config", str(bad), "--out", str(tmp_path / "kernel")]):
        result = subprocess.run([sys.executable, "-m", "fkd", *argv], cwd=repo, capture_output=True, text=True)
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "kernel").exists()


def test_cuda_without_a_gpu_is_one_clear_error(monkeypatch):
    from fkd.core.errors import FkdError
    from fkd.model.inputs import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(FkdError, match="device 'cuda' asked for, but torch sees no CUDA GPU"):
        pick_device("cuda")
    assert pick_device("auto").type == "cpu"


def test_the_config_reference_is_current_and_covers_every_key():
    from fkd.core.config import DEFAULTS, REFERENCE, reference_markdown

    assert list(REFERENCE) == list(DEFAULTS)
    assert all(allowed and doc for _, allowed, doc in REFERENCE.values())
    docs = Path(__file__).resolve().parents[1] / "docs" / "configs.md"
    assert docs.read_text() == reference_markdown(), "docs/configs.md is stale: fkd config --markdown > docs/configs.md"
    for key in DEFAULTS:
        assert f"| `{key}` |" in docs.read_text()


def test_help_is_written_for_users():
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    help_text = subprocess.run([sys.executable, "-m", "fkd", "--help"], cwd=repo, capture_output=True, text=True).stdout
    assert "Facial keypoints" in help_text and "the loop:" in help_text and "sub-command per module" not in help_text
    push = subprocess.run([sys.executable, "-m", "fkd", "kaggle", "push", "--help"], cwd=repo, capture_output=True,
                          text=True).stdout
    assert "kaggle kernels push -p DIR" in push.split("options:")[0]
    resolved = subprocess.run([sys.executable, "-m", "fkd", "config", str(repo / "configs" / "demo.yaml")], cwd=repo,
                              capture_output=True, text=True)
    assert resolved.returncode == 0 and yaml.safe_load(resolved.stdout)["keep"] == "last"


def test_a_base_chain_merges_and_a_cycle_is_refused(tmp_path):
    from fkd.core.errors import FkdError

    (tmp_path / "root.yaml").write_text("description: the root\nmodel: lenet\nepochs: 9\naugment: {flip: 0.5, rotate: 5}\n")
    (tmp_path / "middle.yaml").write_text("base: root\nseed: 3\n")
    (tmp_path / "leaf.yaml").write_text("base: middle.yaml\nepochs: 4\naugment: {shift: 0.02}\n")
    leaf = load_config(tmp_path / "leaf.yaml")
    assert (leaf["model"], leaf["seed"], leaf["epochs"], leaf["name"]) == ("lenet", 3, 4, "leaf")
    assert leaf["augment"] == {"shift": 0.02}          # a mapping in a delta replaces the base's whole
    assert leaf["description"] == ""                   # a recipe describes itself
    (tmp_path / "a.yaml").write_text("base: b\n")
    (tmp_path / "b.yaml").write_text("base: a\n")
    with pytest.raises(FkdError, match=r"'a' leads back to itself \(a.yaml -> b.yaml -> a.yaml\)"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "lost.yaml").write_text("base: nowhere\n")
    with pytest.raises(FkdError, match=r"lost.yaml: key 'base': no config 'nowhere' beside it"):
        load_config(tmp_path / "lost.yaml")


def test_a_model_options_delta_over_the_same_model_keeps_the_base_options(tmp_path):
    (tmp_path / "root.yaml").write_text("model: convnet\nmodel_options: {widths: [8, 16], hidden: 32, dropout: 0.1}\n"
                                        "augment: {flip: 0.5, rotate: 5}\n")
    (tmp_path / "middle.yaml").write_text("base: root\nseed: 3\n")
    (tmp_path / "leaf.yaml").write_text("base: middle\nmodel_options: {stem: 16, dropout: 0.0}\n")
    (tmp_path / "same.yaml").write_text("base: root\nmodel: convnet\nmodel_options: {stem: 16}\n")
    merged = {"widths": [8, 16], "hidden": 32, "dropout": 0.0, "stem": 16}
    assert load_config(tmp_path / "leaf.yaml")["model_options"] == merged            # one key changed, the rest kept
    assert load_config(tmp_path / "same.yaml")["model_options"] == {**merged, "dropout": 0.1}  # model named, unchanged
    (tmp_path / "default.yaml").write_text("model_options: {widths: [8, 16]}\n")   # the default model, seedcnn
    (tmp_path / "named.yaml").write_text("base: default\nmodel: seedcnn\nmodel_options: {dropout: 0.1}\n")
    assert load_config(tmp_path / "named.yaml")["model_options"] == {"widths": [8, 16], "dropout": 0.1}
    (tmp_path / "rotate.yaml").write_text("base: root\naugment: {rotate: 8}\n")
    assert load_config(tmp_path / "rotate.yaml")["augment"] == {"rotate": 8}       # augment is still replaced whole
    config = load_config(tmp_path / "leaf.yaml", sets=["model_options.stem=8"])      # --set: one key of the resolved
    assert config["model_options"] == {**merged, "stem": 8}


def test_a_delta_that_changes_the_model_replaces_its_options(tmp_path):
    (tmp_path / "root.yaml").write_text("model: convnet\nmodel_options: {widths: [8, 16], hidden: 32, dropout: 0.1}\n")
    (tmp_path / "heat.yaml").write_text("base: root\nmodel: heatmap:convnet\nmodel_options: {stride: 4}\n")
    assert load_config(tmp_path / "heat.yaml")["model_options"] == {"stride": 4}     # no `hidden` from convnet
    (tmp_path / "bare.yaml").write_text("base: root\nmodel: heatmap:convnet\n")
    assert load_config(tmp_path / "bare.yaml")["model_options"] == {}                # the new model's defaults
    (tmp_path / "stem.yaml").write_text("base: heat\nmodel_options: {stem: 16}\n")  # then merged over the new model's
    assert load_config(tmp_path / "stem.yaml")["model_options"] == {"stride": 4, "stem": 16}
    check_model_options(load_config(tmp_path / "bare.yaml"))
    check_model_options(load_config(tmp_path / "stem.yaml"))


def test_fkd_config_shows_the_merged_model_options(tmp_path):
    import subprocess
    import sys

    (tmp_path / "root.yaml").write_text("model: convnet\nmodel_options: {widths: [8, 16], hidden: 32, dropout: 0.1}\n")
    (tmp_path / "leaf.yaml").write_text("base: root\nmodel_options: {stem: 16}\n")
    repo = Path(__file__).resolve().parents[1]
    for sets, options in [([], {"widths": [8, 16], "hidden": 32, "dropout": 0.1, "stem": 16}),
                          (["--set", "model_options.stem=8"], {"widths": [8, 16], "hidden": 32, "dropout": 0.1, "stem": 8})]:
        result = subprocess.run([sys.executable, "-m", "fkd", "config", str(tmp_path / "leaf.yaml"), *sets], cwd=repo,
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert yaml.safe_load(result.stdout)["model_options"] == options
    reference = subprocess.run([sys.executable, "-m", "fkd", "config"], cwd=repo, capture_output=True, text=True).stdout
    assert "model_options" in reference and "key by key" in " ".join(reference.split())


def test_the_repository_configs_are_deltas():
    from fkd.core.config import read_config_file

    based = {path.stem: read_config_file(path).get("base") for path in CONFIGS}
    assert based["cpu-long-clip-seed4"] == "cpu-long-clip"
    assert set(read_config_file(Path(CONFIGS[0]).parent / "cpu-long-clip-seed4.yaml")) == {"description", "base", "seed"}
    assert sum(b is not None for b in based.values()) >= 10


def test_set_overrides_with_type_checks():
    from fkd.core.errors import FkdError

    path = Path(CONFIGS[0]).parent / "cpu.yaml"
    config = load_config(path, sets=["seed=4", "epochs=64", "augment.rotate=5", "tta_scales=[1.0]", "grad_clip=null"])
    assert (config["seed"], config["epochs"], config["augment"]["rotate"], config["tta_scales"]) == (4, 64, 5, [1.0])
    assert config["augment"]["flip"] == 0.5            # one nested key changed, the others kept
    with pytest.raises(FkdError, match=r"^--set sed=4: unknown key 'sed' \(did you mean 'seed'\?"):
        load_config(path, sets=["sed=4"])
    with pytest.raises(FkdError, match=r"^--set epochs=four: key 'epochs': 'four' is not a whole number"):
        load_config(path, sets=["epochs=four"])
    with pytest.raises(FkdError, match=r"expected key=value"):
        load_config(path, sets=["seed"])


def test_make_cv_passes_set():
    import subprocess

    dry = subprocess.run(["make", "-n", "cv", "SET=seed=4 epochs=64"], cwd=Path(CONFIGS[0]).parents[1],
                         capture_output=True, text=True).stdout
    assert "--set seed=4 --set epochs=64" in dry


# ---------------------------------------------------------------- hostile or careless input

def one_line_error(call, *args, **kwargs) -> str:
    from fkd.core.errors import FkdError

    with pytest.raises(FkdError) as error:
        call(*args, **kwargs)
    message = str(error.value)
    assert "\n" not in message
    return message


def alias_bomb(levels=10, width=10) -> str:
    """A flow mapping of nested anchors: level k holds `width` aliases of level k - 1 (width**levels leaves)."""
    parts = [f"l0: &l0 [{', '.join(['x'] * width)}]"]
    parts += [f"l{k}: &l{k} [{', '.join([f'*l{k - 1}'] * width)}]" for k in range(1, levels)]
    return "{" + ", ".join(parts) + "}"


@pytest.mark.parametrize("where", ["description", "model_options"])
def test_an_alias_bomb_is_refused_before_it_expands(where, tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(f"model: lenet\n{where}: {alias_bomb()}\n")
    message = one_line_error(load_config, path)
    # 10**10 leaves are counted, never built: the refusal comes from the count
    assert re.match(rf"{re.escape(str(path))}: expands to 12,345,679,\d{{3}} values", message)
    assert "at most 10,000 values" in message
    message = one_line_error(load_config, None, sets=[f"{where}={alias_bomb()}"])
    assert message.startswith(f"--set {where}=") and "expands to 12,345,679," in message


def test_an_alias_loop_is_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("model_options: &a {inner: *a}\n")
    assert "loop" in one_line_error(load_config, path)


def test_a_config_past_the_size_cap_is_refused_without_aliases(tmp_path):
    import json

    path = tmp_path / "big.yaml"
    path.write_text(f"description: [{', '.join(['0'] * 20_000)}]\n")
    assert one_line_error(load_config, path).startswith(f"{path}: expands to 20,003 values")
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"description": [0] * 100_000}))
    assert one_line_error(load_config, path).startswith(f"{path}: expands to 100,003 values")
    path = tmp_path / "huge.yaml"
    path.write_text("description: " + "x" * 1_000_001 + "\n")
    assert one_line_error(load_config, path).startswith(f"{path}: larger than 1,000,000 bytes")
    path = tmp_path / "shared.yaml"   # a long text repeated by aliases: a little file, a lot of text
    path.write_text(f"description: &d {'x' * 100_000}\nmodel_options: {{a: [{', '.join(['*d'] * 20)}]}}\n")
    message = one_line_error(load_config, path)
    assert re.match(rf"{re.escape(str(path))}: expands to \d+ values \(2,100,\d{{3}} characters\)", message)


@pytest.mark.parametrize("text, key, line", [
    ("lr: 0.1\nseed: 1\nlr: 0.2\n", "lr", 3),
    ("augment:\n  flip: 0.5\n  rotate: 5\n  flip: 0.2\n", "flip", 4),
    ("model_options: {dropout: 0.1, dropout: 0.2}\n", "dropout", 1),
])
def test_a_duplicate_yaml_key_is_refused_with_its_line(text, key, line, tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text(text)
    assert one_line_error(load_config, path) == f"{path}: duplicate key {key!r} (line {line})"


@pytest.mark.parametrize("text, key, line", [
    ('{\n  "lr": 0.1,\n  "seed": 1,\n  "lr": 0.2\n}\n', "lr", 4),
    ('{"augment": {\n  "flip": 0.5,\n  "flip": 0.2}}', "flip", 3),
])
def test_a_duplicate_json_key_is_refused_with_its_line(text, key, line, tmp_path):
    path = tmp_path / "twice.json"
    path.write_text(text)
    message = one_line_error(load_config, path)
    assert message.startswith(f"{path}: not valid JSON: duplicate key {key!r}: line {line} ")


def test_a_duplicate_key_in_a_set_value_is_refused():
    message = one_line_error(load_config, None, sets=["model_options={dropout: 0.1, dropout: 0.2}"])
    assert message == "--set model_options={dropout: 0.1, dropout: 0.2}: duplicate key 'dropout' (line 1)"


def test_a_yaml_merge_key_may_repeat_what_it_merges(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text("model: convnet\nmodel_options: {<<: &shared {dropout: 0.1, hidden: 64}, dropout: 0.2}\n")
    assert load_config(path)["model_options"] == {"dropout": 0.2, "hidden": 64}


def test_numbers_as_kagglers_write_them(tmp_path):
    from fkd.core.config import dump_config

    path = tmp_path / "numbers.yaml"
    path.write_text("lr: 1e-3\nweight_decay: 5E-4\ngrad_clip: 1.5e1\nepochs: 4\ndescription: 1e\n")
    config = load_config(path)
    assert (config["lr"], config["weight_decay"], config["grad_clip"]) == (0.001, 0.0005, 15.0)
    assert config["epochs"] == 4 and isinstance(config["epochs"], int) and config["description"] == "1e"
    config = load_config(None, sets=["lr=1e-3", "weight_decay=5e4", "seed=7", "description=e5"])
    assert (config["lr"], config["weight_decay"], config["seed"], config["description"]) == (0.001, 50000.0, 7, "e5")
    assert isinstance(config["seed"], int)
    assert one_line_error(load_config, None, sets=["lr=-1E-2"]) == \
        "--set lr=-1E-2: key 'lr': -0.01 is out of range: must be > 0"
    back = tmp_path / "back.yaml"   # a text that reads as a number now is written quoted
    back.write_text(dump_config(load_config(None, description="1e5", name="back")))
    assert load_config(back)["description"] == "1e5"


@pytest.mark.parametrize("content", [
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x60",
    "description: caf\u00e9\n".encode("latin-1"),
])
def test_a_config_that_is_not_utf8_text_is_one_line(content, tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(content)
    assert one_line_error(load_config, path).startswith(f"{path}: not a UTF-8 text file")


@pytest.mark.parametrize("text", ["- lr\n- 0.1\n", "just words\n", "1: 2\n", "~: 2\n"])
def test_a_file_that_is_not_a_mapping_of_names_is_one_line(text, tmp_path):
    path = tmp_path / "odd.yaml"
    path.write_text(text)
    message = one_line_error(load_config, path)
    assert message.startswith(f"{path}: ") and ("a config is a mapping" in message or "unknown key" in message)


def test_each_error_names_where_the_bad_value_came_from(tmp_path):
    (tmp_path / "root.yaml").write_text("model: lenet\nloss: huber\n")
    (tmp_path / "leaf.yaml").write_text("base: root\nepochs: 4\n")
    assert one_line_error(load_config, tmp_path / "leaf.yaml").startswith(f"{tmp_path / 'root.yaml'}: key 'loss'")
    (tmp_path / "typo.yaml").write_text("epoch: 4\n")
    (tmp_path / "child.yaml").write_text("base: typo\nseed: 1\n")
    assert one_line_error(load_config, tmp_path / "child.yaml").startswith(
        f"{tmp_path / 'typo.yaml'}: unknown key 'epoch'")
    good = tmp_path / "good.yaml"
    good.write_text("model: lenet\n")
    assert one_line_error(load_config, good, sets=["seed=1", "lr=abc"]) == \
        "--set lr=abc: key 'lr': 'abc' is not a number"
    assert one_line_error(load_config, good, sets=["augment.flip=2"]).startswith("--set augment.flip=2: key 'augment'")
    assert one_line_error(load_config, good, epochs=0).startswith("key 'epochs': 0 is out of range")
    (tmp_path / "bad.yaml").write_text("loss: huber\n")
    assert one_line_error(load_config, tmp_path / "bad.yaml", sets=["seed=1"]).startswith(
        f"{tmp_path / 'bad.yaml'}: key 'loss'")


BAD_NAMES = ["", "a/b", "..", ".", ".hidden", "a\\b", "x" * 101, "tab\there", "new\nline", "with space", "../up",
             "-flag", "caf\u00e9"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_run_name_is_one_safe_folder_name(name, tmp_path):
    path = tmp_path / "named.yaml"
    path.write_text(yaml.safe_dump({"name": name}))
    message = one_line_error(load_config, path)
    assert message.startswith(f"{path}: key 'name': ") and "not a safe folder name" in message
    assert one_line_error(load_config, None, name=name).startswith("key 'name': ")
    assert one_line_error(load_config, None, sets=[f"name={json.dumps(name)}"]).startswith("--set name=")
    from fkd.core.config import check_name

    message = one_line_error(check_name, name, what="--name")
    assert message.startswith("--name ") and "is not a safe folder name" in message


def test_a_safe_run_name_passes(tmp_path):
    from fkd.core.config import check_name

    assert check_name("cpu-long-clip_seed4+v2.1") == "cpu-long-clip_seed4+v2.1"
    assert check_name("x" * 100) == "x" * 100
    assert load_config(None, model="timm:resnet18.a1_in1k")["name"] == "timm-resnet18.a1_in1k"
    path = tmp_path / "has space.yaml"   # the file's stem names the run: the file is blamed
    path.write_text("model: lenet\n")
    assert one_line_error(load_config, path).startswith(f"{path}: key 'name': 'has space'")
    assert load_config(path, name="spaceless")["name"] == "spaceless"


@pytest.mark.parametrize("model, options, named", [
    ("lenet", {"widths": [8]}, "widths"),
    ("convnet", {"width": [8]}, "width"),
    ("heatmap:convnet", {"hidden": 64}, "hidden"),
])
def test_check_model_options_names_the_bad_key_and_the_model(model, options, named):
    config = load_config(None, model=model, model_options=options)
    message = one_line_error(check_model_options, config)
    assert named in message and model in message


def test_check_model_options_passes_timm_options_to_timm():
    pytest.importorskip("timm")
    fine = {"drop_stem_pool": True, "dropout": 0.1}      # fkd's names, and timm's own below
    check_model_options(load_config(None, model="timm:resnet18", model_options=fine))
    check_model_options(load_config(None, model="timm:resnet18", model_options={"drop_rate": 0.1}))
    bad = load_config(None, model="timm:resnet18", model_options={"no_such_option": 1})
    message = one_line_error(check_model_options, bad)
    assert "no_such_option" in message and "resnet18" in message


def test_fkd_config_checks_model_options_before_anything_is_made(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text("model: heatmap:convnet\nmodel_options: {widths: [8, 16], hidden: 64}\n")
    repo = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-m", "fkd", "config", str(bad)], cwd=repo, capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "hidden" in result.stderr and result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]
