"""`fkd kernel`: the single-file Kaggle kernel bundle (fkd.kaggle.runner is what it runs on Kaggle).

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
import io
import json
import os
import shutil
import zipfile
from pathlib import Path

from fkd.core.atomic import write_text
from fkd.core.config import add_set_argument, dump_config, load_config
from fkd.core.errors import FkdError
from fkd.core.provenance import source_commit
from fkd.kaggle.metadata import (
    GPU_MACHINE_SHAPES,
    METADATA,
    TPU_MACHINE_SHAPES,
    USERNAME_PLACEHOLDER,
    _variant,
    is_placeholder,
    kaggle_username,
    load_metadata,
    resolve_template,
    validate_metadata,
)
from fkd.kaggle.program import COMPETITION

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # fkd/
DEFAULT_TEMPLATE = REPO_ROOT / "kernel-metadata.json"
SCRIPT_NAME = "fkd_kernel.py"
MANIFEST = "kernels.json"
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
from fkd.kaggle.runner import kernel_main  # noqa: E402  (from the unpacked copy)

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
    options = {}  # the keys the options below set: their errors name the option, not the template
    if datasets:
        meta["dataset_sources"] = list(meta.get("dataset_sources", [])) + list(datasets)
        options["dataset_sources"] = "--dataset"
    if internet is not None:
        meta["enable_internet"] = bool(internet)
    if machine_shape is not None:
        meta["machine_shape"] = machine_shape
        options["machine_shape"] = "--machine-shape"
    validate_metadata(meta, template, options=options)
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
