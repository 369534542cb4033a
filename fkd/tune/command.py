"""`fkd tune --config BASE --space SPACE.yaml`: a recipe search on Optuna, whose trials are fkd runs.

    fkd tune --config configs/stem-heatmap.yaml --space configs/spaces/stem-heatmap.yaml --trials 20
    fkd tune ... --storage postgresql://user:pw@host/db     # the same command on each machine joins
    fkd tune ... --workers 2                                  # two worker processes here (one per GPU)
    fkd tune --report STUDY                                   # the trials, the best config, pictures

Everything is checked before the first trial (the space against the base config, the storage URL,
the data): a bad space or storage is one line, nothing is trained and no study is made.
"""
import os
import signal
import subprocess
import sys
from pathlib import Path

from fkd.core.arguments import positive_float, positive_int
from fkd.core.config import add_set_argument, load_config
from fkd.core.errors import FkdError
from fkd.data.competition import find_data_dir
from fkd.tune import report, study
from fkd.tune.space import check_space, read_space


def parse_on_folds(text: str) -> list:
    """--on-folds 0 | 0,1 | all."""
    if text == "all":
        return ["all"]
    try:
        folds = sorted({int(part) for part in text.split(",")})
    except ValueError:
        raise FkdError(f"--on-folds {text!r}: fold numbers separated by commas (0,1), or all") from None
    if not folds or folds[0] < 0:
        raise FkdError(f"--on-folds {text!r}: fold numbers are 0 or more")
    return folds


def add_arguments(parser):
    parser.add_argument("--config", help="the base config (a file in configs/)")
    parser.add_argument("--space", help="the search space: YAML of dotted config keys and their ranges "
                        "(configs/spaces/)")
    parser.add_argument("--study", help="the study's name (default: the space file's name)")
    parser.add_argument("--trials", type=positive_int, default=20, help="finished trials the study should hold "
                        "(complete or pruned; a rerun goes on to this count; default 20)")
    parser.add_argument("--timeout", type=positive_float, metavar="MINUTES", help="start no new trial after this "
                        "many minutes (the running one finishes; the same command goes on later). Kaggle stops a "
                        "kernel at 12 hours")
    parser.add_argument("--on-folds", default="0", help="the folds each trial trains: 0 (default), 0,1, or all")
    parser.add_argument("--objective", default="rmse", help="rmse, or rmse,seconds: the Pareto front of the "
                        "kept RMSE and the training seconds per fold")
    parser.add_argument("--pruner", default="median", help=f"{', '.join(study.PRUNERS)} (default median; "
                        "no pruning with two objectives)")
    parser.add_argument("--storage", help="a database URL (default: runs/<study>/study.db, SQLite); "
                        "postgresql://... or mysql://... for workers on several machines")
    parser.add_argument("--heartbeat", type=positive_int, default=study.HEARTBEAT_S, help="seconds between a worker's "
                        f"heartbeats (default {study.HEARTBEAT_S}); a trial silent for 4 of them is failed and tried "
                        "again")
    parser.add_argument("--workers", type=positive_int, default=1, help="worker processes on this machine, each on its "
                        "own GPU (CPU threads split between them); default 1")
    parser.add_argument("--data-dir", help="competition folder (default: data/, then /kaggle/input)")
    parser.add_argument("--runs-dir", default="runs", help="the study's folder goes under it (default runs)")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:1 (each worker's own, with --workers)")
    parser.add_argument("--report", metavar="STUDY", help="print and draw an existing study (its trials, the "
                        "best config as configs/<study>-best.yaml, pictures in runs/<study>/report.md)")
    parser.add_argument("--configs-dir", default="configs", help="where the best config is written")
    parser.add_argument("--no-report", action="store_true", help="end without the report (the workers that "
                        "--workers starts: their parent reports once)")
    add_set_argument(parser)


def folds_of(text: str, base_config: dict) -> list:
    """The folds --on-folds names, within the base config's."""
    asked = parse_on_folds(text)
    folds = list(range(base_config["folds"])) if asked == ["all"] else asked
    if folds[-1] >= base_config["folds"]:
        raise FkdError(f"--on-folds {text}: the base config has {base_config['folds']} folds (0-"
                       f"{base_config['folds'] - 1})")
    return folds


def setup_of(args) -> tuple:
    """(study name, setup, space): everything checked, nothing created."""
    if not args.config or not args.space:
        raise FkdError("fkd tune needs --config BASE and --space SPACE.yaml (or --report STUDY)")
    objectives = [o.strip() for o in args.objective.split(",")]
    if objectives[0] != "rmse" or len(objectives) > 2 or not set(objectives) <= set(study.OBJECTIVES):
        raise FkdError(f"--objective {args.objective!r}: rmse, or rmse,seconds")
    study.make_pruner(args.pruner)
    base_config = load_config(args.config, sets=args.set)
    folds = folds_of(args.on_folds, base_config)
    space = read_space(args.space)
    check_space(space, args.config, args.set, args.space)
    name = study.study_name_of(args.study, args.space)
    setup = {"base": str(Path(args.config)), "base_config": Path(args.config).stem, "space": {k: [kind, values]
             for k, (kind, values) in space.items()}, "space_file": str(args.space), "folds": folds,
             "objectives": objectives, "sets": list(args.set), "pruner": args.pruner,
             "pruning": len(objectives) == 1 and args.pruner != "none", "device": args.device,
             "steps": "percent of each fold's schedule"}
    return name, setup, space


def run(args):
    if args.report:
        study_dir = Path(args.runs_dir) / study.study_name_of(args.report, args.report)
        url = study.storage_url(args.storage, study_dir)
        if args.storage is None and not (study_dir / study.STORAGE_FILE).is_file():
            raise FkdError(f"no study here ({study.STORAGE_FILE} missing): pass --storage, or --runs-dir", path=study_dir)
        report.print_and_draw(args.report, study.open_storage(url), study_dir, args.configs_dir)
        return 0
    name, setup, space = setup_of(args)
    data_dir = find_data_dir(args.data_dir)
    study_dir = Path(args.runs_dir) / name
    url = study.storage_url(args.storage, study_dir)
    storage = study.open_storage(url, args.heartbeat, 4 * args.heartbeat)
    the_study = study.open_study(name, storage, setup["objectives"], args.pruner, setup)
    study.enqueue_base(the_study, space, load_config(args.config, sets=args.set))
    print(f"study {name}: {study.shown_url(url)}; "
          f"{len(space)} key(s): {', '.join(space)}; {args.trials} trials on fold(s) "
          f"{', '.join(map(str, setup['folds']))}; pruner {args.pruner if setup['pruning'] else 'none'}")
    if args.workers > 1:
        run_workers(args, name)
    else:
        objective = study.make_objective(setup, space, data_dir, study_dir)
        study.run_worker(the_study, objective, args.trials, timeout_minutes=args.timeout)
    if not args.no_report:
        report.print_and_draw(name, storage, study_dir, args.configs_dir)
    return 0


def _worker_argv(args, name) -> list:
    argv = ["tune", "--config", args.config, "--space", args.space, "--study", name, "--trials", str(args.trials),
            "--on-folds", args.on_folds, "--objective", args.objective, "--pruner", args.pruner,
            "--runs-dir", args.runs_dir, "--configs-dir", args.configs_dir, "--heartbeat", str(args.heartbeat),
            "--no-report"]
    for option, value in (("--storage", args.storage), ("--data-dir", args.data_dir), ("--device", args.device),
                          ("--timeout", args.timeout)):
        if value:
            argv += [option, str(value)]
    return argv + [f"--set={item}" for item in args.set]


def run_workers(args, name) -> None:
    """N worker processes of this same study: each on its own GPU where there are GPUs (else on the
    CPU, its threads split between them); Ctrl-C stops them all."""
    import torch  # the devices to share out; only --workers needs it here

    gpus = torch.cuda.device_count()
    threads = max(1, (os.cpu_count() or 1) // args.workers)
    processes = []
    for worker in range(args.workers):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        device = []
        if gpus and args.device in (None, "auto", "cuda"):
            env["CUDA_VISIBLE_DEVICES"] = str(worker % gpus)
            device = [] if args.device else ["--device", "cuda"]
        processes.append(subprocess.Popen([sys.executable, "-m", "fkd", *_worker_argv(args, name), *device],
                                          env=env))
    try:
        statuses = [process.wait() for process in processes]
    except KeyboardInterrupt:
        for process in processes:
            process.send_signal(signal.SIGINT)
        for process in processes:
            process.wait()
        raise
    if any(statuses):
        raise FkdError(f"{sum(1 for s in statuses if s)} of {args.workers} workers failed (see their lines above)")
