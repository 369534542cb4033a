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

from fkd.core.arguments import positive_float
from fkd.core.atomic import write_text
from fkd.core.config import add_set_argument, dump_config, load_config
from fkd.core.errors import FkdError
from fkd.core.provenance import source_commit
from fkd.kaggle.estimate import describe as describe_estimate
from fkd.kaggle.estimate import estimate_kernel
from fkd.kaggle.metadata import (
    GPU_MACHINE_SHAPES,
    METADATA,
    TPU_MACHINE_SHAPES,
    USERNAME_PLACEHOLDER,
    _variant,
    is_placeholder,
    slugify,
    kaggle_username,
    load_metadata,
    resolve_template,
    validate_metadata,
)
from fkd.kaggle.program import COMPETITION
from fkd.model.nets import check_model_options
from fkd.tune.command import folds_of
from fkd.tune.space import check_space, read_space
from fkd.tune.study import storage_url, study_name_of

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # fkd/
DEFAULT_TEMPLATE = REPO_ROOT / "kernel-metadata.json"
# what `make kernel` / `fkd kernel` ship with no --config: the best measured ensemble (docs/results.md), stacked
STUDY_MINUTES = 600  # a kernel's study starts no trial after 10 hours: the last one and the report fit in 12
DEFAULT_MEMBERS = (REPO_ROOT / "configs" / "stem-regression.yaml", REPO_ROOT / "configs" / "stem-heatmap.yaml")
NO_BF16_MACHINES = ("NvidiaTeslaT4", "NvidiaTeslaP100")
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
CONFIGS = @CONFIGS@
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

_status = kernel_main(PLAN, CONFIGS, BUNDLE_ROOT)
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


def render_script(plan: dict, configs: dict, description: str) -> str:
    from fkd import __version__
    payload = base64.b64encode(package_zip()).decode()
    payload = "\n".join(payload[i:i + 100] for i in range(0, len(payload), 100))
    replacements = {
        "@DESCRIPTION@": description, "@VERSION@": __version__, "@COMMIT@": source_commit(),
        "@PLAN@": repr(plan), "@CONFIGS@": repr(configs), "@PAYLOAD@": payload,
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
        if folder == out.resolve():
            for name in (SCRIPT_NAME, METADATA):
                (folder / name).unlink(missing_ok=True)
        elif out.resolve() in folder.parents:
            shutil.rmtree(folder, ignore_errors=True)  # an entry naming a place outside --out is left alone
    manifest.unlink()


def _write_kernel(folder: Path, meta: dict, script: str, template_path) -> None:
    meta = dict(meta, code_file=SCRIPT_NAME)
    validate_metadata(meta, template_path)          # before anything is written
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / SCRIPT_NAME, script)
    os.chmod(folder / SCRIPT_NAME, 0o755)
    validate_metadata(meta, folder / METADATA, folder)
    write_text(folder / METADATA, json.dumps(meta, indent=2) + "\n")


def resolve_members(configs, folds=None, name=None, sets=(), machine_shape=None) -> list:
    """[{name, config, description, settings, text}]: each member's config resolved (a typo fails here,
    not on Kaggle) and the members checked together: one set of folds (a stack needs them), distinct
    run names, a precision the machine can train in."""
    configs = [Path(c) for c in configs]
    members = []
    for path in configs:
        if not path.is_file():
            raise FkdError("no such config file", path=path)
        settings = load_config(path, folds=folds, name=name if len(configs) == 1 else None, sets=sets)
        check_model_options(settings)
        # the resolved config, so the kernel depends on no base file and carries the --set values
        text = f"# {path} resolved by fkd kernel (base files and --set merged in)\n" + dump_config(settings)
        members.append({"name": settings["name"], "config": f"{settings['name']}.yaml", "path": path,
                        "description": " ".join(str(settings["description"]).split()), "settings": settings,
                        "text": text})
    seen = {}
    for member in members:
        if member["name"] in seen:
            raise FkdError(f"two members are named {member['name']!r} ({seen[member['name']]} and {member['path']}): "
                           "each member is a run folder; give one another name (name: in its config)")
        seen[member["name"]] = member["path"]
    splits = {(m["settings"]["folds"], m["settings"]["fold_seed"]) for m in members}
    if len(splits) > 1:
        listed = ", ".join(f"{m['name']}: {m['settings']['folds']} folds, fold_seed {m['settings']['fold_seed']}"
                           for m in members)
        raise FkdError(f"the members train on different folds ({listed}): blending and stacking need the same "
                       "folds; pass --folds N and give them one fold_seed")
    shape = machine_shape or "NvidiaTeslaT4"
    for member in members:
        if member["settings"]["precision"] == "bf16" and shape in NO_BF16_MACHINES:
            raise FkdError(f"precision: bf16, which a {shape} cannot train in (no bf16 convolutions before sm_80): "
                           "use precision auto (fp16 on a T4, bf16 on newer GPUs and bf16 CPUs)", path=member["path"])
    return members


def _check_out(out: Path) -> None:
    """--out may hold an earlier bundle (its kernels.json) and anything else, but never a kernel's files
    that fkd kernel did not write (the repository's own kernel-metadata.json template, say)."""
    if (out / MANIFEST).is_file():
        return
    foreign = [name for name in (SCRIPT_NAME, METADATA) if (out / name).exists()]
    if foreign:
        raise FkdError(f"holds {foreign[0]} that fkd kernel did not write (no {MANIFEST}): choose another --out",
                       path=out)


def build(configs=None, out="build/kernel", folds=None, split=False, name=None, stack=None, template=DEFAULT_TEMPLATE,
          username=None, slug=None, title=None, datasets=(), mean_shape=False, internet=None, machine_shape=None,
          sets=(), tune=None) -> dict:
    """Write the bundle(s) to `out`; returns the manifest (also written to out/kernels.json).

    configs: one config file or several (the members); none gives DEFAULT_MEMBERS, stacked. stack: the
    members are stacked (fkd submit --stack) rather than blended. tune: {space, trials, storage, on_folds, timeout}:
    the kernel runs an `fkd tune` study of its one member instead (the study's SQLite file in its output)."""
    out = Path(out)
    if isinstance(configs, (str, Path)):
        configs = [configs]
    if tune and (not configs or len(configs) != 1 or split or mean_shape):
        raise FkdError("--tune searches around one --config (no --split, no --mean-shape)")
    if not configs and not mean_shape:
        configs, stack = DEFAULT_MEMBERS, True if stack is None else stack
    members = [] if mean_shape else resolve_members(configs, folds, name, sets, machine_shape)
    if members:
        folds = members[0]["settings"]["folds"]
        name = name if name and len(members) > 1 else "+".join(m["name"] for m in members)
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
    estimated = estimate_kernel([m["settings"] for m in members]) if members else None
    study = None
    if tune:
        space = read_space(tune["space"])
        check_space(space, members[0]["path"], sets, tune["space"])
        folds_of(tune.get("on_folds", "0"), members[0]["settings"])  # a typo fails here, not on Kaggle
        if tune.get("storage"):
            storage_url(tune["storage"], out)
        if int(tune["trials"]) < 1:
            raise FkdError("--trials must be 1 or more")
        study = {"name": study_name_of(None, tune["space"]), "space": "space.yaml", "trials": int(tune["trials"]),
                 "on_folds": tune.get("on_folds", "0"), "storage": tune.get("storage"),
                 "timeout": float(tune.get("timeout") or STUDY_MINUTES)}
        members[0]["text_space"] = Path(tune["space"]).read_text()
    plan_members = [{**{k: m[k] for k in ("name", "config", "description")},
                     "fold_seconds": round(e["fold_seconds"][1])}  # the runner starts the longest jobs first
                    for m, e in zip(members, estimated["members"] if estimated else [])]
    texts = {m["config"]: m["text"] for m in members}
    if study:
        texts["space.yaml"] = members[0]["text_space"]
    base = {"name": name, "folds": folds, "members": plan_members, "stack": bool(stack), "mean_shape": bool(mean_shape),
            "internet": bool(meta.get("enable_internet", False)), "competition": COMPETITION}
    what = " + ".join(m["name"] for m in members) + (", stacked" if stack else "")

    out.mkdir(parents=True, exist_ok=True)
    _check_out(out)
    _clear_previous(out)
    kernels = []
    if not split:
        plan = dict(base, mode="tune", study=study) if study else dict(base, mode="single")
        description = ("mean-shape baseline + submission" if mean_shape else
                       f"fkd tune study {study['name']} around {what}" if study else
                       f"{folds}-fold cv of {what} + submission")
        _write_kernel(out, meta, render_script(plan, texts, description), template)
        kernels.append({"role": "single", "dir": ".", "id": meta["id"]})
    else:
        if mean_shape:
            raise FkdError("--split trains folds: it does not go with --mean-shape")
        fold_ids = []
        for member in members:
            for k in range(folds):
                label = f"fold{k}" if len(members) == 1 else f"{slugify(member['name'])}-fold{k}"
                fold_meta = _variant(meta, label)
                plan = dict(base, mode="fold", member=member["name"], fold=k)
                script = render_script(plan, {member["config"]: member["text"]},
                                       f"fold {k} of {folds} of {member['name']}")
                _write_kernel(out / label, fold_meta, script, template)
                kernels.append({"role": "fold", "member": member["name"], "fold": k, "dir": label,
                                "id": fold_meta["id"]})
                fold_ids.append(fold_meta["id"])
        ens_meta = _variant(meta, "ensemble", kernel_sources=list(meta.get("kernel_sources", [])) + fold_ids)
        plan = dict(base, mode="ensemble", sources=fold_ids)
        script = render_script(plan, texts, f"{'stack' if stack else 'blend'} of the fold kernels of {what} + submission")
        _write_kernel(out / "ensemble", ens_meta, script, template)
        kernels.append({"role": "ensemble", "dir": "ensemble", "id": ens_meta["id"]})
    manifest = {"layout": "split" if split else "single", "name": name, "folds": folds,
                "members": [{"name": m["name"], "config": str(m["path"])} for m in members],
                "stack": bool(stack), "kernels": kernels,
                "estimate": [] if study or not estimated else describe_estimate(estimated)}
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
    parser.add_argument("--config", action="append", metavar="CONFIG",
                        help="a member's training config (repeatable: every member's folds are trained, then "
                        "blended or stacked); default: the best measured ensemble, "
                        + " + ".join(p.name for p in DEFAULT_MEMBERS) + ", stacked")
    parser.add_argument("--stack", action="store_true",
                        help="stack the members (fkd submit --stack) instead of blending them; the default "
                        "members are stacked anyway")
    parser.add_argument("--out", default="build/kernel", help="bundle folder (default %(default)s)")
    parser.add_argument("--folds", type=int, help="K of K-fold (default: the config's, 5)")
    parser.add_argument("--split", action="store_true",
                        help="one kernel per member and fold plus an ensemble kernel that blends (or stacks) them")
    parser.add_argument("--name", help="one member: its run name (default: the config's name, else its file "
                        "stem); several: the submission's name (default: the members' names joined by +)")
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
    parser.add_argument("--tune", metavar="SPACE", help="run an fkd tune study of the one --config with this search "
                        "space instead (its SQLite file comes back with `make output`; fkd tune --report reads it)")
    parser.add_argument("--trials", type=int, default=20, help="with --tune: the study's trials (default 20)")
    parser.add_argument("--on-folds", default="0", help="with --tune: the folds each trial trains (default 0)")
    parser.add_argument("--timeout", type=positive_float, default=STUDY_MINUTES, metavar="MINUTES", help="with "
                        f"--tune: start no new trial after this many minutes (default {STUDY_MINUTES:g}: Kaggle stops "
                        "a kernel at 12 hours, and one stopped there keeps no output)")
    parser.add_argument("--storage", help="with --tune: a database the kernel reaches (needs --internet); "
                        "default the SQLite file in the kernel's output")
    parser.add_argument("--mean-shape", action="store_true",
                        help="no training: submit the mean-shape baseline (a quick plumbing check on Kaggle)")


def run(args):
    if args.stack and args.config and len(args.config) == 1:
        print("note: --stack with one member stacks that run alone: per coordinate a linear fit of its OOF "
              "predictions, then per kind of face a ridge correction over all its values (as `make submit "
              "RUNS=runs/x STACK=1`); with more members it also weighs them")
    manifest = build(args.config, args.out, folds=args.folds, split=args.split, name=args.name,
                     stack=args.stack or None,
                     template=args.template, username=args.username, slug=args.slug, title=args.title,
                     datasets=args.dataset, mean_shape=args.mean_shape, internet=True if args.internet else None,
                     machine_shape=args.machine_shape, sets=args.set,
                     tune={"space": args.tune, "trials": args.trials, "on_folds": args.on_folds,
                           "storage": args.storage, "timeout": args.timeout} if args.tune else None)
    out = Path(args.out)
    for entry in manifest["kernels"]:
        folder = out / entry["dir"]
        size = (folder / SCRIPT_NAME).stat().st_size
        print(f"{entry['role']:<8} {entry['id']:<50} {folder / SCRIPT_NAME} ({size / 1024:.0f} KiB)")
    if any(is_placeholder(e["id"]) for e in manifest["kernels"]):
        print(f"note: no Kaggle username (set KAGGLE_USERNAME or pass --username): the kernel id uses the "
              f"placeholder {USERNAME_PLACEHOLDER!r}, which `fkd kaggle push` refuses")
    for line in manifest["estimate"]:
        print(line)
    print(f"next: fkd kaggle push --kernel-dir {out}")
    return 0
