"""`fkd kernel`: the single-file Kaggle kernel bundle, and the runner that bundle calls on Kaggle.

The bundle is one Python script (kernel_type "script") carrying the whole `fkd` package as a
base64 zip. On Kaggle it unpacks the package into a temp folder, puts it first on sys.path and
runs the same entry points as the command line (`fkd cv ...`, then `fkd submit ...`): there is no
second copy of the training code. The config file's text travels inside the script too.

    fkd kernel --config configs/gpu.yaml --out build/kernel            # one kernel: cv + submit
    fkd kernel --config configs/gpu.yaml --out build/kernel --split    # one kernel per fold + ensemble

Layout of --out: the script + kernel-metadata.json (from the top-level template), and
kernels.json, the list `fkd kaggle push/status/output` work from. With --split: fold<k>/ (each
trains fold k only: `cv --only-fold k` -> runs/<name>/fold<k>.pt) and ensemble/ (its metadata lists
the fold kernels in kernel_sources; it gathers their checkpoints from /kaggle/input into one run,
lets `cv` assemble OOF and test predictions, and blends with `submit --runs ...`). Push the
ensemble once the fold kernels are complete (`fkd kaggle push` waits for them).

On Kaggle: data is searched under $FKD_KAGGLE_INPUT or /kaggle/input, everything is written to
$FKD_KAGGLE_WORKING or /kaggle/working (runs/<name>/, submissions/, submission.csv). With more than
one GPU the single kernel trains folds concurrently, one process per GPU (CUDA_VISIBLE_DEVICES).
"""
import base64
import difflib
import io
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

from fkd.atomic import atomic_path, write_text
from fkd.config import RUN_INDEPENDENT_KEYS, add_set_argument, dump_config, load_config
from fkd.errors import FkdError
from fkd.provenance import source_commit

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_TEMPLATE = REPO_ROOT / "kernel-metadata.json"
SCRIPT_NAME = "fkd_kernel.py"
MANIFEST = "kernels.json"
METADATA = "kernel-metadata.json"
USERNAME_PLACEHOLDER = "your-kaggle-username"
COMPETITION = "facial-keypoints-detection"

# ---------------------------------------------------------------- kernel-metadata.json rules
# The keys `kaggle kernels push` (kaggle 2.2.5, KaggleApi.kernels_push) reads. It silently ignores
# any other key, so here an unknown key is a typo and an error.
METADATA_KEYS = {
    "id", "id_no", "title", "code_file", "language", "kernel_type", "is_private", "enable_gpu",
    "enable_tpu", "enable_internet", "dataset_sources", "competition_sources", "kernel_sources",
    "model_sources", "keywords", "docker_image_pinning_type", "docker_image", "machine_shape",
}
# machine_shape: the accelerators a push may ask for (kaggle 2.2.5's --accelerator help, kagglesdk's
# ApiSaveKernelRequest). P100 and the v3 TPUs are retired: Kaggle silently runs something else, and
# Kaggle's torch (built for sm_70 and newer) cannot run on a P100 anyway.
GPU_MACHINE_SHAPES = ("NvidiaTeslaT4",)
TPU_MACHINE_SHAPES = ("TpuV5E8",)
RETIRED_MACHINE_SHAPES = ("NvidiaTeslaP100", "TpuV38", "Tpu1VmV38", "TpuV232", "TpuV2256")
BOOLEAN_KEYS = ("is_private", "enable_gpu", "enable_tpu", "enable_internet")
LIST_KEYS = ("dataset_sources", "competition_sources", "kernel_sources", "model_sources", "keywords")
LANGUAGES = ("python", "r", "rmarkdown")        # KaggleApi.valid_push_language_types
KERNEL_TYPES = ("script", "notebook")           # KaggleApi.valid_push_kernel_types
PINNING_TYPES = ("original", "latest")          # KaggleApi.valid_push_pinning_types


def slugify(text: str) -> str:
    """The URL slug Kaggle derives from a title (python-slugify, as the kaggle CLI uses)."""
    try:
        from slugify import slugify as _slugify
        return _slugify(text)
    except ImportError:  # the same result for plain ASCII titles
        return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def validate_metadata(meta, path, folder=None) -> None:
    """The checks `kaggle kernels push` applies, plus: unknown keys, real booleans, real lists.

    `folder` given: code_file must exist in it. Raises FkdError naming the file and the key.
    """
    def fail(key, message):
        raise FkdError(f"key {key!r}: {message}", path=path)

    if not isinstance(meta, dict):
        raise FkdError("must hold a JSON object", path=path)
    for key in meta:
        if key not in METADATA_KEYS:
            close = difflib.get_close_matches(key, sorted(METADATA_KEYS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            fail(key, f"unknown key{hint}: `kaggle kernels push` would silently ignore it")
    if "title" not in meta or not isinstance(meta["title"], str) or len(meta["title"]) < 5:
        fail("title", "must be a string of at least five characters")
    code_file = meta.get("code_file")
    if not isinstance(code_file, str) or not code_file:
        fail("code_file", "a source file must be specified")
    if folder is not None and not (Path(folder) / code_file).is_file():
        fail("code_file", f"source file not found: {Path(folder) / code_file}")
    slug, id_no = meta.get("id"), meta.get("id_no")
    if not slug and not id_no:
        fail("id", "an id 'owner/slug' (or id_no) must be specified")
    if slug:
        if not isinstance(slug, str):
            fail("id", "must be a string 'owner/slug'")
        parts = slug.split("/")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            fail("id", f"{slug!r} must be 'owner/slug' (no version)")
        if len(parts[1]) < 5:
            fail("id", f"kernel slug {parts[1]!r} must be at least five characters")
        if slugify(meta["title"]) != parts[1].lower():
            fail("title", f"{meta['title']!r} gives the slug {slugify(meta['title'])!r}, not {parts[1]!r}: "
                          "Kaggle would file the kernel under another name")
    if meta.get("language") not in LANGUAGES:
        fail("language", f"{meta.get('language')!r} is not one of {', '.join(LANGUAGES)}")
    if meta.get("kernel_type") not in KERNEL_TYPES:
        fail("kernel_type", f"{meta.get('kernel_type')!r} is not one of {', '.join(KERNEL_TYPES)}")
    if code_file.endswith(".py") and meta["kernel_type"] != "script":
        fail("kernel_type", f"a .py code_file needs kernel_type 'script', not {meta['kernel_type']!r}")
    for key in BOOLEAN_KEYS:
        if key in meta and not isinstance(meta[key], bool):
            fail(key, f"must be true or false, not {json.dumps(meta[key])}")
    for key in LIST_KEYS:
        if key in meta:
            if not isinstance(meta[key], list) or not all(isinstance(v, str) for v in meta[key]):
                fail(key, f"must be a list of strings, not {json.dumps(meta[key])}")
    for source in meta.get("dataset_sources", []):
        parts = source.split("/")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            fail("dataset_sources", f"{source!r} must be 'owner/dataset-slug'")
    for source in meta.get("kernel_sources", []):
        parts = source.split("/")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1] or (len(parts) == 3 and not parts[2]):
            fail("kernel_sources", f"{source!r} must be 'owner/kernel-slug'")
        if len(parts[1]) < 5:
            fail("kernel_sources", f"kernel slug {parts[1]!r} must be at least five characters")
    for source in meta.get("model_sources", []):
        parts = source.split("/")
        if len(parts) != 5 or not all(parts) or not parts[4].isdigit():
            fail("model_sources", f"{source!r} must be 'owner/model/framework/instance/version-number'")
    shape = meta.get("machine_shape")
    if shape is not None:
        accepted = GPU_MACHINE_SHAPES + TPU_MACHINE_SHAPES
        if shape in RETIRED_MACHINE_SHAPES:
            fail("machine_shape", f"{shape!r} is retired (Kaggle runs another machine instead); "
                                  f"accepted: {', '.join(accepted)}")
        if shape not in accepted:
            fail("machine_shape", f"{json.dumps(shape)} is not one of {', '.join(accepted)}")
        wanted = GPU_MACHINE_SHAPES if meta.get("enable_gpu") else TPU_MACHINE_SHAPES if meta.get("enable_tpu") else ()
        if shape not in wanted:
            fail("machine_shape", f"{shape!r} does not go with enable_gpu {json.dumps(meta.get('enable_gpu'))} and "
                                  f"enable_tpu {json.dumps(meta.get('enable_tpu'))}")
    elif meta.get("enable_gpu"):
        fail("machine_shape", f"enable_gpu asks for a GPU but not which: add \"machine_shape\": "
                              f"\"{GPU_MACHINE_SHAPES[0]}\" (accepted: {', '.join(GPU_MACHINE_SHAPES + TPU_MACHINE_SHAPES)})")
    pinning = meta.get("docker_image_pinning_type")
    if pinning is not None and pinning not in PINNING_TYPES:
        fail("docker_image_pinning_type", f"{pinning!r} is not one of {', '.join(PINNING_TYPES)}")


def _read_json_file(path, missing: str):
    path = Path(path)
    if not path.is_file():
        raise FkdError(missing, path=path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise FkdError(f"not valid JSON ({error})", path=path) from None


def load_metadata(folder):
    """kernel-metadata.json of a kernel folder, validated (code_file must exist)."""
    path = Path(folder) / METADATA
    meta = _read_json_file(path, "no such file: build the kernel first (`make kernel`)")
    validate_metadata(meta, path, folder)
    return meta


def kaggle_username(explicit=None):
    """--username, else $KAGGLE_USERNAME, else the username in kaggle.json (never its key), else None."""
    if explicit:
        return explicit
    if os.environ.get("KAGGLE_USERNAME"):
        return os.environ["KAGGLE_USERNAME"]
    config_dir = os.environ.get("KAGGLE_CONFIG_DIR") or os.path.join(os.path.expanduser("~"), ".kaggle")
    try:
        return json.loads(Path(config_dir, "kaggle.json").read_text()).get("username") or None
    except (OSError, ValueError, AttributeError):
        return None


def resolve_template(template_path, username, slug=None, title=None):
    """The template with {username} filled in (and an optional slug/title override), validated."""
    template_path = Path(template_path)
    meta = _read_json_file(template_path, "no such file (the kernel metadata template)")
    if not isinstance(meta, dict):
        raise FkdError("must hold a JSON object", path=template_path)
    if isinstance(meta.get("id"), str):
        meta["id"] = meta["id"].replace("{username}", username or USERNAME_PLACEHOLDER)
        if slug:
            meta["id"] = meta["id"].split("/")[0] + "/" + slug
    if slug and not title:
        title = slug.replace("-", " ")
    if title:
        meta["title"] = title
    validate_metadata(meta, template_path)
    return meta


def _variant(meta, suffix, **changes):
    """Metadata of a fold/ensemble kernel: slug and title get `suffix`."""
    out = dict(meta)
    owner, slug = meta["id"].split("/")
    out["id"] = f"{owner}/{slug}-{suffix}"
    out["title"] = f"{meta['title']} {suffix}"
    out.update(changes)
    return out


def is_placeholder(kernel_id: str) -> bool:
    return kernel_id.split("/")[0] in (USERNAME_PLACEHOLDER, "{username}")


# ---------------------------------------------------------------- building the bundle

SCRIPT_TEMPLATE = '''#!/usr/bin/env python3
"""fkd Kaggle kernel: @DESCRIPTION@

Built by `fkd kernel` from fkd @VERSION@ (commit @COMMIT@). The whole `fkd` package travels inside
this file (a base64 zip below); it is unpacked into a temp folder at start and run through the same
entry points as the command line. Rebuild with `make kernel` rather than editing this file.
Overrides for a local dry run: FKD_KAGGLE_INPUT (default /kaggle/input), FKD_KAGGLE_WORKING
(default /kaggle/working).
"""
import base64
import io
import sys
import tempfile
import zipfile

PLAN = @PLAN@
COMMIT = "@COMMIT@"
CONFIG_NAME = @CONFIG_NAME@
CONFIG_TEXT = @CONFIG_TEXT@
PACKAGE_ZIP = """
@PAYLOAD@
"""


def unpack():
    root = tempfile.mkdtemp(prefix="fkd-bundle-")
    with zipfile.ZipFile(io.BytesIO(base64.b64decode(PACKAGE_ZIP))) as archive:
        archive.extractall(root)
    for name in [m for m in sys.modules if m == "fkd" or m.startswith("fkd.")]:
        del sys.modules[name]  # never mix with another copy of fkd
    sys.path.insert(0, root)
    return root


BUNDLE_ROOT = unpack()
import os  # noqa: E402
os.environ.setdefault("FKD_COMMIT", COMMIT)  # what each run's config.json records
from fkd.kernel import kernel_main  # noqa: E402  (from the unpacked copy)

_status = kernel_main(PLAN, CONFIG_NAME, CONFIG_TEXT, BUNDLE_ROOT)
if _status:
    raise SystemExit(_status)
'''


def package_zip(package_dir=PACKAGE_DIR) -> bytes:
    """fkd/**/*.py as a zip with fixed timestamps: the same sources give the same bytes."""
    package_dir = Path(package_dir)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in sorted(package_dir.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            name = "fkd/" + path.relative_to(package_dir).as_posix()
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def render_script(plan: dict, config_name: str, config_text: str, description: str) -> str:
    from fkd import __version__
    payload = base64.b64encode(package_zip()).decode()
    payload = "\n".join(payload[i:i + 100] for i in range(0, len(payload), 100))
    replacements = {
        "@DESCRIPTION@": description, "@VERSION@": __version__, "@COMMIT@": source_commit(),
        "@PLAN@": repr(plan), "@CONFIG_NAME@": repr(config_name), "@CONFIG_TEXT@": repr(config_text),
        "@PAYLOAD@": payload,
    }
    script = SCRIPT_TEMPLATE
    for key, value in replacements.items():
        script = script.replace(key, value)
    return script


def _clear_previous(out: Path) -> None:
    """Remove what an earlier `fkd kernel --out` wrote here (listed in its kernels.json), nothing else."""
    manifest = out / MANIFEST
    if not manifest.is_file():
        return
    try:
        entries = json.loads(manifest.read_text()).get("kernels", [])
    except (ValueError, AttributeError):
        return
    for entry in entries:
        folder = (out / entry.get("dir", ".")).resolve()
        if folder != out.resolve() and out.resolve() in folder.parents:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            for name in (SCRIPT_NAME, METADATA):
                (folder / name).unlink(missing_ok=True)
    manifest.unlink()


def _write_kernel(folder: Path, meta: dict, script: str, template_path) -> None:
    meta = dict(meta, code_file=SCRIPT_NAME)
    validate_metadata(meta, template_path)          # before anything is written
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / SCRIPT_NAME, script)
    os.chmod(folder / SCRIPT_NAME, 0o755)
    validate_metadata(meta, folder / METADATA, folder)
    write_text(folder / METADATA, json.dumps(meta, indent=2) + "\n")


def build(config, out, folds=None, split=False, name=None, template=DEFAULT_TEMPLATE, username=None,
          slug=None, title=None, datasets=(), mean_shape=False, internet=None, machine_shape=None,
          sets=()) -> dict:
    """Write the bundle(s) to `out`; returns the manifest (also written to out/kernels.json)."""
    out = Path(out)
    if config is None and not mean_shape:
        raise FkdError("--config is required (or --mean-shape for a plumbing check without training)")
    config_name, config_text = "none.yaml", ""
    if config is not None:
        config = Path(config)
        if not config.is_file():
            raise FkdError("no such config file", path=config)
        settings = load_config(config, folds=folds, name=name, sets=sets)  # a typo fails here, not on Kaggle
        folds, name = settings["folds"], settings["name"]
        # the resolved config, so the kernel depends on no base file and carries the --set values
        config_name = config.name
        config_text = f"# {config} resolved by fkd kernel (base files and --set merged in)\n" + dump_config(settings)
    name = name or "mean"
    folds = 5 if folds is None else folds
    if folds < 2:
        raise FkdError(f"--folds {folds}: K-fold needs at least 2 folds")
    user = kaggle_username(username)
    meta = resolve_template(template, user, slug=slug, title=title)
    if datasets:
        meta["dataset_sources"] = list(meta.get("dataset_sources", [])) + list(datasets)
    if internet is not None:
        meta["enable_internet"] = bool(internet)
    if machine_shape is not None:
        meta["machine_shape"] = machine_shape
    validate_metadata(meta, template)
    base = {"name": name, "folds": folds, "config": config_name, "mean_shape": bool(mean_shape),
            "internet": bool(meta.get("enable_internet", False)), "competition": COMPETITION}

    out.mkdir(parents=True, exist_ok=True)
    _clear_previous(out)
    kernels = []
    if not split:
        plan = dict(base, mode="single")
        description = f"{'mean-shape baseline' if mean_shape else f'{folds}-fold cv of {config_name}'} + submission"
        _write_kernel(out, meta, render_script(plan, config_name, config_text, description), template)
        kernels.append({"role": "single", "dir": ".", "id": meta["id"]})
    else:
        if mean_shape:
            raise FkdError("--split trains folds: it does not go with --mean-shape")
        fold_ids = []
        for k in range(folds):
            fold_meta = _variant(meta, f"fold{k}")
            plan = dict(base, mode="fold", fold=k)
            script = render_script(plan, config_name, config_text, f"fold {k} of {folds} of {config_name}")
            _write_kernel(out / f"fold{k}", fold_meta, script, template)
            kernels.append({"role": "fold", "fold": k, "dir": f"fold{k}", "id": fold_meta["id"]})
            fold_ids.append(fold_meta["id"])
        ens_meta = _variant(meta, "ensemble", kernel_sources=list(meta.get("kernel_sources", [])) + fold_ids)
        plan = dict(base, mode="ensemble", sources=fold_ids)
        script = render_script(plan, config_name, config_text, f"blend of the {folds} fold kernels + submission")
        _write_kernel(out / "ensemble", ens_meta, script, template)
        kernels.append({"role": "ensemble", "dir": "ensemble", "id": ens_meta["id"]})
    manifest = {"layout": "split" if split else "single", "name": name, "folds": folds,
                "config": config_name, "kernels": kernels}
    write_text(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_manifest(kernel_dir) -> list:
    """[{role, dir (absolute Path), id, fold?}] of a built kernel folder, validated; push order."""
    kernel_dir = Path(kernel_dir)
    path = kernel_dir / MANIFEST
    if path.is_file():
        try:
            entries = json.loads(path.read_text())["kernels"]
        except (ValueError, KeyError, TypeError) as error:
            raise FkdError(f"unreadable kernel list ({error})", path=path) from None
    elif (kernel_dir / METADATA).is_file():  # a hand-made kernel folder
        entries = [{"role": "single", "dir": "."}]
    else:
        raise FkdError(f"no {MANIFEST} or {METADATA}: build the kernel first (`make kernel`)", path=kernel_dir)
    kernels = []
    for entry in entries:
        folder = kernel_dir / entry.get("dir", ".")
        meta = load_metadata(folder)
        kernels.append(dict(entry, dir=folder, id=meta["id"], meta=meta))
    order = {"fold": 0, "single": 1, "ensemble": 2}
    return sorted(kernels, key=lambda k: (order.get(k["role"], 1), k.get("fold", 0)))


# ---------------------------------------------------------------- the runner (runs on Kaggle)

_START = time.time()


def log(message: str) -> None:
    elapsed = int(time.time() - _START)
    print(f"[fkd-kernel {elapsed // 3600:d}:{elapsed // 60 % 60:02d}:{elapsed % 60:02d}] {message}", flush=True)


def cuda_device_count() -> int:
    """GPUs torch sees (0 without torch or CUDA); $FKD_KERNEL_GPUS overrides (dry runs, tests)."""
    if os.environ.get("FKD_KERNEL_GPUS"):
        return int(os.environ["FKD_KERNEL_GPUS"])
    try:
        import torch
        return int(torch.cuda.device_count())
    except Exception:  # noqa: BLE001 - no torch, or a broken driver: train on what cv finds
        return 0


def fkd_command(argv) -> None:
    """`python -m fkd ARGV` in this process (the command line's own entry point); raises on failure."""
    from fkd.cli import main
    log("fkd " + " ".join(str(a) for a in argv))
    try:
        status = main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse: bad options
        status = exit_.code if isinstance(exit_.code, int) else 2
    if status:
        raise RuntimeError(f"`fkd {argv[0]}` failed with exit status {status} (see the lines above)")


def _stream(process, prefix):
    for line in process.stdout:
        print(prefix + line.rstrip("\n"), flush=True)
    return process.wait()


def run_fold_process(argv, env, prefix) -> int:
    """One `python -m fkd ...` child; its output printed line by line with `prefix`."""
    process = subprocess.Popen([sys.executable, "-u", "-m", "fkd", *map(str, argv)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    return _stream(process, prefix)


def train_folds_parallel(cv_argv, folds, n_gpus, bundle_root, launch=run_fold_process) -> None:
    """Train each fold in its own process, one process per GPU at a time (CUDA_VISIBLE_DEVICES=g).

    GPUs take the next waiting fold as they come free. `launch(argv, env, prefix) -> exit status`.
    """
    waiting = queue.Queue()
    for k in folds:
        waiting.put(k)
    failures = []
    path = os.pathsep.join(p for p in (str(bundle_root), os.environ.get("PYTHONPATH", "")) if p)

    def worker(gpu):
        while not failures:
            try:
                k = waiting.get_nowait()
            except queue.Empty:
                return
            env = dict(os.environ, CUDA_VISIBLE_DEVICES=str(gpu), PYTHONPATH=path, PYTHONUNBUFFERED="1")
            argv = list(cv_argv) + ["--only-fold", str(k)]
            log(f"gpu {gpu}: fold {k}: fkd " + " ".join(map(str, argv)))
            status = launch(argv, env, f"[gpu{gpu} fold{k}] ")
            log(f"gpu {gpu}: fold {k} finished with exit status {status}")
            if status:
                failures.append((k, status))

    threads = [threading.Thread(target=worker, args=(g,), daemon=True) for g in range(n_gpus)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError("fold training failed: " + ", ".join(f"fold {k} (exit {s})" for k, s in failures))


def gather_fold_checkpoints(input_root, name, folds, run_dir, sources=()) -> list:
    """Copy runs/<name>/fold<k>.pt of every fold kernel (their outputs, under the input root) into run_dir.

    `fkd cv` over run_dir then trains nothing (every checkpoint exists) and only assembles the run:
    oof.csv, test_pred.csv, metrics.json - exactly as if one machine had trained all folds.
    """
    input_root, run_dir = Path(input_root), Path(run_dir)
    found = {}
    for k in range(folds):
        hits = sorted(p for p in input_root.rglob(f"fold{k}.pt")
                      if p.parent.name == name and p.parent.parent.name == "runs")
        if hits:
            found[k] = hits[0]
    missing = [k for k in range(folds) if k not in found]
    if missing:
        raise RuntimeError(f"no runs/{name}/fold<k>.pt under {input_root} for folds {missing}: are the fold "
                           f"kernels {', '.join(sources) or '(none listed)'} complete and attached?")
    # every fold must come from the same config: cv then checks it against this kernel's own
    settings = {}
    for k, path in found.items():
        saved = path.parent / "config.json"
        if saved.is_file():
            settings[k] = {key: value for key, value in json.loads(saved.read_text()).items()
                           if key not in RUN_INDEPENDENT_KEYS}
    differing = [k for k in settings if settings[k] != next(iter(settings.values()))]
    if differing:
        raise RuntimeError(f"the fold kernels trained different configs (folds {differing} differ from fold "
                           f"{next(iter(settings))}): rebuild and push them together")
    run_dir.mkdir(parents=True, exist_ok=True)
    if settings:
        first = found[next(iter(settings))].parent / "config.json"
        with atomic_path(run_dir / "config.json") as tmp:
            shutil.copyfile(first, tmp)
    for k, path in found.items():
        log(f"fold {k}: {path}")
        with atomic_path(run_dir / path.name) as tmp:
            shutil.copyfile(path, tmp)
    return [run_dir / found[k].name for k in range(folds)]


def kernel_main(plan, config_name, config_text, bundle_root) -> int:
    """What the bundle runs: find the data, train (or gather fold runs), blend, write submission.csv."""
    try:
        sys.stdout.reconfigure(line_buffering=True)
    except (AttributeError, ValueError):
        pass
    import fkd
    input_root = Path(os.environ.get("FKD_KAGGLE_INPUT") or "/kaggle/input").resolve()
    working = Path(os.environ.get("FKD_KAGGLE_WORKING") or "/kaggle/working").resolve()
    working.mkdir(parents=True, exist_ok=True)
    os.chdir(working)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    if not plan.get("internet"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no network on Kaggle: fail fast, never hang
    mode, name, folds = plan["mode"], plan["name"], int(plan["folds"])
    log(f"fkd {fkd.__version__} from {Path(fkd.__file__).parent}; python {sys.version.split()[0]}; "
        f"mode {mode}; run {name}; input {input_root}; working {working}")
    config_path = Path(bundle_root) / config_name
    config_path.write_text(config_text)

    from fkd.data import find_data_dir
    data_dir = find_data_dir(search_root=input_root).resolve()
    log(f"competition data: {data_dir} ({', '.join(sorted(p.name for p in data_dir.iterdir()))})")
    runs_dir = working / "runs"
    cv_argv = ["cv", "--data-dir", data_dir, "--config", config_path, "--folds", folds,
               "--runs-dir", runs_dir]
    n_gpus = 0 if plan.get("mean_shape") else cuda_device_count()
    log(f"GPUs: {n_gpus}")

    if mode == "fold":
        k = int(plan["fold"])
        fkd_command(cv_argv + ["--name", name, "--only-fold", k])
        log(f"fold {k} done: {runs_dir / name / f'fold{k}.pt'} (the ensemble kernel gathers the folds)")
        return 0
    if mode == "single" and plan.get("mean_shape"):
        submit_argv = ["submit", "--data-dir", data_dir, "--model", "mean"]
    elif mode == "single":
        argv = cv_argv + ["--name", name]
        if n_gpus > 1:
            log(f"{n_gpus} GPUs: folds trained concurrently, one process per GPU")
            train_folds_parallel(argv, list(range(folds)), n_gpus, bundle_root)
        fkd_command(argv)  # after parallel training: every fold is done, this gathers OOF and metrics
        submit_argv = ["submit", "--data-dir", data_dir, "--runs", runs_dir / name]
    elif mode == "ensemble":
        gather_fold_checkpoints(input_root, name, folds, runs_dir / name, plan.get("sources", ()))
        fkd_command(cv_argv + ["--name", name])  # nothing left to train: assembles OOF, test predictions
        submit_argv = ["submit", "--data-dir", data_dir, "--runs", runs_dir / name]
    else:
        raise RuntimeError(f"unknown plan mode {mode!r}")

    out_dir = working / "submissions"
    before = set(out_dir.glob("*.csv")) if out_dir.is_dir() else set()
    fkd_command(submit_argv + ["--name", name, "--out-dir", out_dir])
    made = sorted(set(out_dir.glob("*.csv")) - before, key=lambda p: p.stat().st_mtime)
    if not made:
        raise RuntimeError(f"`fkd submit` wrote no new .csv into {out_dir}")
    final = working / "submission.csv"
    shutil.copyfile(made[-1], final)
    fkd_command(["check-submission", final, "--lookup", data_dir / "IdLookupTable.csv"])
    log(f"done: {final} (from {made[-1].name})")
    return 0


# ---------------------------------------------------------------- command

def add_arguments(parser):
    parser.add_argument("--config", help="training config to embed (e.g. configs/gpu.yaml)")
    parser.add_argument("--out", default="build/kernel", help="bundle folder (default %(default)s)")
    parser.add_argument("--folds", type=int, help="K of K-fold (default: the config's, 5)")
    parser.add_argument("--split", action="store_true",
                        help="one kernel per fold plus an ensemble kernel that blends them")
    parser.add_argument("--name", help="run name (default: the config's name, else its file stem)")
    parser.add_argument("--template", default=str(DEFAULT_TEMPLATE),
                        help="kernel-metadata.json template (default: the repository's)")
    parser.add_argument("--username", help="Kaggle username for the kernel id "
                        "(default $KAGGLE_USERNAME, else the username in kaggle.json)")
    parser.add_argument("--slug", help="kernel slug (default from the template); the title follows it")
    parser.add_argument("--title", help="kernel title (must give the slug)")
    parser.add_argument("--dataset", action="append", default=[], metavar="OWNER/SLUG",
                        help="attach a dataset, e.g. timm weights (repeatable)")
    parser.add_argument("--internet", action="store_true", help="enable internet in the kernel")
    add_set_argument(parser)
    parser.add_argument("--machine-shape", help="the accelerator to ask for (default: the template's, "
                        f"{GPU_MACHINE_SHAPES[0]}; accepted: {', '.join(GPU_MACHINE_SHAPES + TPU_MACHINE_SHAPES)})")
    parser.add_argument("--mean-shape", action="store_true",
                        help="no training: submit the mean-shape baseline (a quick plumbing check on Kaggle)")


def run(args):
    manifest = build(args.config, args.out, folds=args.folds, split=args.split, name=args.name,
                     template=args.template, username=args.username, slug=args.slug, title=args.title,
                     datasets=args.dataset, mean_shape=args.mean_shape, internet=True if args.internet else None,
                     machine_shape=args.machine_shape, sets=args.set)
    out = Path(args.out)
    for entry in manifest["kernels"]:
        folder = out / entry["dir"]
        size = (folder / SCRIPT_NAME).stat().st_size
        print(f"{entry['role']:<8} {entry['id']:<50} {folder / SCRIPT_NAME} ({size / 1024:.0f} KiB)")
    if any(is_placeholder(e["id"]) for e in manifest["kernels"]):
        print(f"note: no Kaggle username (set KAGGLE_USERNAME or pass --username): the kernel id uses the "
              f"placeholder {USERNAME_PLACEHOLDER!r}, which `fkd kaggle push` refuses")
    print(f"next: fkd kaggle push --kernel-dir {out}")
    return 0
