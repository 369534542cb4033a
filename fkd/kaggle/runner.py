"""What the kernel bundle runs on Kaggle: find the data, train (folds in parallel on several GPUs, or
gather fold kernels' checkpoints), blend, write and check submission.csv. Every step is a
`python -m fkd ...` process, as on the command line."""
import contextlib
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from fkd.core.atomic import atomic_path, read_json
from fkd.core.config import RUN_INDEPENDENT_KEYS
from fkd.core.lock import HOLDER_ENV, writer_lock
from fkd.data.competition import find_data_dir

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


def fkd_command(argv, bundle_root) -> None:
    """`python -m fkd ARGV` as a child process of the bundle's own fkd, its output relayed; raises on failure."""
    log("fkd " + " ".join(str(a) for a in argv))
    path = os.pathsep.join(p for p in (str(bundle_root), os.environ.get("PYTHONPATH", "")) if p)
    status = run_fold_process(argv, dict(os.environ, PYTHONPATH=path, PYTHONUNBUFFERED="1"), "")
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


def train_jobs_parallel(jobs, n_gpus, bundle_root, launch=run_fold_process) -> None:
    """Train each job [(label, cv argv)] in its own process, one process per GPU at a time
    (CUDA_VISIBLE_DEVICES=g): every member's folds share the GPUs, which take the next waiting job as
    they come free. `launch(argv, env, prefix) -> exit status`. The caller holds the runs' locks: its
    pid in $FKD_RUN_LOCK_HOLDER lets the jobs write their folds under them."""
    waiting = queue.Queue()
    for job in jobs:
        waiting.put(job)
    failures = []
    path = os.pathsep.join(p for p in (str(bundle_root), os.environ.get("PYTHONPATH", "")) if p)

    def worker(gpu):
        while not failures:
            try:
                label, argv = waiting.get_nowait()
            except queue.Empty:
                return
            env = dict(os.environ, CUDA_VISIBLE_DEVICES=str(gpu), PYTHONPATH=path, PYTHONUNBUFFERED="1",
                       **{HOLDER_ENV: str(os.getpid())})
            log(f"gpu {gpu}: {label}: fkd " + " ".join(map(str, argv)))
            status = launch(argv, env, f"[gpu{gpu} {label}] ")
            log(f"gpu {gpu}: {label} finished with exit status {status}")
            if status:
                failures.append((label, status))

    threads = [threading.Thread(target=worker, args=(g,), daemon=True) for g in range(n_gpus)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError("fold training failed: " + ", ".join(f"{label} (exit {s})" for label, s in failures))


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
        log(f"{name} fold {k}: {path}")
        with atomic_path(run_dir / path.name) as tmp:
            shutil.copyfile(path, tmp)
    return [run_dir / found[k].name for k in range(folds)]


def member_summary(run_dir) -> str:
    """One log line of a finished member: its folds' times and its OOF figures."""
    run_dir = Path(run_dir)
    metrics = read_json(run_dir / "metrics.json", kind=dict)
    folds = ", ".join(f"{seconds:.0f} s" for seconds in metrics.get("fold_seconds", []))
    return (f"member {run_dir.name}: folds {folds or 'timed in no checkpoint'}; OOF RMSE {metrics['rmse']:.4f} = "
            f"{metrics['ratio_to_mean_shape']:.3f}x the mean shape (complete rows {metrics['rmse_complete']:.4f}, "
            f"partial rows {metrics['rmse_partial']:.4f})")


def kernel_main(plan, configs, bundle_root) -> int:
    """What the bundle runs: find the data, train every member's folds (or gather the fold kernels'),
    blend or stack the members as `fkd submit` does, write and check submission.csv.

    plan: mode (single, fold, ensemble), members [{name, config, description}], folds, stack, and for a
    fold kernel its member and fold; configs: {config file name: its resolved text}."""
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
    mode, members, folds = plan["mode"], plan["members"], int(plan["folds"])
    log(f"fkd {fkd.__version__} from {Path(fkd.__file__).parent}; python {sys.version.split()[0]}; "
        f"mode {mode}; {len(members)} member(s): {', '.join(m['name'] for m in members)}; "
        f"{'stacked' if plan.get('stack') else 'blended'}; input {input_root}; working {working}")
    for member in members:
        log(f"member {member['name']} ({member['config']}): {member.get('description') or 'no description'}")
    for config_name, text in configs.items():  # a fold kernel carries its own member's config alone
        (Path(bundle_root) / config_name).write_text(text)

    data_dir = find_data_dir(search_root=input_root).resolve()
    log(f"competition data: {data_dir} ({', '.join(sorted(p.name for p in data_dir.iterdir()))})")
    runs_dir = working / "runs"

    def cv_argv(member):
        return ["cv", "--data-dir", data_dir, "--config", Path(bundle_root) / member["config"], "--folds", folds,
                "--runs-dir", runs_dir, "--name", member["name"]]

    n_gpus = 0 if plan.get("mean_shape") else cuda_device_count()
    log(f"GPUs: {n_gpus}")

    if mode == "tune":
        [member], study = members, plan["study"]
        argv = ["tune", "--config", Path(bundle_root) / member["config"], "--space", Path(bundle_root) / study["space"],
                "--study", study["name"], "--trials", study["trials"], "--on-folds", study["on_folds"],
                "--timeout", study["timeout"],
                "--data-dir", data_dir, "--runs-dir", runs_dir, "--configs-dir", bundle_root]
        argv += (["--storage", study["storage"]] if study.get("storage") else []) + (
            ["--workers", n_gpus] if n_gpus > 1 else [])
        fkd_command(argv, bundle_root)
        log(f"done: study {study['name']} in {runs_dir / study['name']} (`make output` brings it back; "
            f"`fkd tune --report {study['name']}` reads it)")
        return 0
    if mode == "fold":
        [member] = [m for m in members if m["name"] == plan["member"]]
        k = int(plan["fold"])
        fkd_command(cv_argv(member) + ["--only-fold", k], bundle_root)
        log(f"{member['name']} fold {k} done: {runs_dir / member['name'] / f'fold{k}.pt'} (the ensemble kernel "
            "gathers the folds)")
        return 0
    if mode == "single" and plan.get("mean_shape"):
        submit_argv = ["submit", "--data-dir", data_dir, "--model", "mean"]
    elif mode in ("single", "ensemble"):
        if mode == "ensemble":
            for member in members:
                gather_fold_checkpoints(input_root, member["name"], folds, runs_dir / member["name"],
                                        plan.get("sources", ()))
        elif n_gpus > 1:
            log(f"{n_gpus} GPUs: the folds of every member trained concurrently, one process per GPU")
            longest_first = sorted(members, key=lambda m: -m.get("fold_seconds", 0))  # the estimate's packing
            jobs = [(f"{m['name']} fold{k}", cv_argv(m) + ["--only-fold", k]) for m in longest_first
                    for k in range(folds)]
            with contextlib.ExitStack() as locks:
                for member in members:
                    (runs_dir / member["name"]).mkdir(parents=True, exist_ok=True)
                    locks.enter_context(writer_lock(runs_dir / member["name"], log))
                train_jobs_parallel(jobs, n_gpus, bundle_root)
        for member in members:  # trains what is left (everything, on one device), then assembles the run
            fkd_command(cv_argv(member), bundle_root)
        for member in members:
            log(member_summary(runs_dir / member["name"]))
        submit_argv = (["submit", "--data-dir", data_dir, "--runs", *(runs_dir / m["name"] for m in members)]
                       + (["--stack"] if plan.get("stack") else []))
    else:
        raise RuntimeError(f"unknown plan mode {mode!r}")

    out_dir = working / "submissions"
    before = set(out_dir.glob("*.csv")) if out_dir.is_dir() else set()
    fkd_command(submit_argv + ["--name", plan["name"], "--out-dir", out_dir], bundle_root)
    made = sorted(set(out_dir.glob("*.csv")) - before, key=lambda p: p.stat().st_mtime)
    if not made:
        raise RuntimeError(f"`fkd submit` wrote no new .csv into {out_dir}")
    final = working / "submission.csv"
    shutil.copyfile(made[-1], final)
    fkd_command(["check-submission", final, "--lookup", data_dir / "IdLookupTable.csv"], bundle_root)
    log(f"done: {final} (from {made[-1].name})")
    return 0
