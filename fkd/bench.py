"""`fkd bench`: figures for speed and accuracy, each next to its baseline measured in the same run.

  parse       training.csv parse time (fkd vs the notebook way) and cache reload time
  throughput  training images/second of seedcnn: fkd's loop vs a plain PyTorch DataLoader loop
  cv          CV RMSE of the mean shape, the `seed` recipe, seedcnn/lenet with fkd's recipe, the CPU recipe
"""
import tempfile
import time
from pathlib import Path

import numpy as np

from fkd.data import find_data_dir, load_training, parse_training, read_bytes, source_file
from fkd.errors import FkdError

SECTIONS = ("parse", "throughput", "cv")
KAGGLE_TRAINING_ROWS = 7049
FULL_CV_CONFIGS = ["configs/seed.yaml@1", "configs/seedcnn.yaml@1", "configs/lenet.yaml@1", "configs/cpu.yaml"]
QUICK_CV_CONFIGS = ["configs/demo.yaml@1"]  # fold 0 of the demo recipe: about a minute on the proxy


def add_arguments(parser):
    parser.add_argument("--data-dir", help="competition folder (make bench uses ../shared/data/proxy)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {SECTIONS}")
    parser.add_argument("--runs-dir", default="runs/bench", help="where the cv section's runs go")
    parser.add_argument("--rows", type=int, default=KAGGLE_TRAINING_ROWS,
                        help="rows of the csv the parse section times (Kaggle's training.csv has 7,049)")
    parser.add_argument("--quick", action="store_true",
                        help=f"the short figures (under 5 minutes on 2 cores): the cv section runs only "
                             f"{' '.join(QUICK_CV_CONFIGS)} (make bench; make bench FULL=1 runs everything)")
    parser.add_argument("--cv-configs", nargs="+", default=FULL_CV_CONFIGS,
                        help="configs the cv section cross-validates after the mean shape; CONFIG@N trains "
                             "only its first N folds (the baselines, to keep the benchmark short)")


def argparse_namespace(argv):
    """The parsed options of `fkd bench ARGV` (for callers that are not the command line)."""
    import argparse

    parser = argparse.ArgumentParser(prog="fkd bench")
    add_arguments(parser)
    return parser.parse_args(argv)


def best_of(function, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def notebook_parse(path):
    """The common notebook way: pandas, then np.array(s.split()) per row."""
    import pandas as pd

    frame = pd.read_csv(path)
    images = np.vstack(frame["Image"].apply(lambda s: np.array(s.split(), dtype=np.float32)).to_numpy())
    return images.reshape(-1, 96, 96), frame.drop(columns="Image").to_numpy(dtype=np.float32)


def kaggle_sized_csv(data_dir, folder: Path, rows: int = KAGGLE_TRAINING_ROWS) -> Path:
    """The data's training.csv, rows repeated (or cut) to `rows` (Kaggle's: 7,049), as a plain csv file."""
    raw = read_bytes(source_file(data_dir, "training"))
    header, _, body = raw.partition(b"\n")
    lines = body.rstrip(b"\n").split(b"\n")
    lines = (lines * (rows // len(lines) + 1))[:rows]
    path = folder / "training.csv"
    path.write_bytes(header + b"\n" + b"\n".join(lines) + b"\n")
    return path


def bench_parse(data_dir, rows: int = KAGGLE_TRAINING_ROWS) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = kaggle_sized_csv(data_dir, Path(folder), rows)
        size = path.stat().st_size / 1e6
        raw = path.read_bytes()
        parse_training(raw[:200_000].rsplit(b"\n", 1)[0] + b"\n")  # compile (or load) the parser first
        fkd_seconds = best_of(lambda: parse_training(path.read_bytes(), path))
        notebook_seconds = best_of(lambda: notebook_parse(path), repeats=1)
        load_training(folder)  # builds the cache
        cache_seconds = best_of(lambda: load_training(folder))
    print(f"parse  {rows} rows, {size:.0f} MB csv: fkd {fkd_seconds:.2f} s, "
          f"notebook way {notebook_seconds:.2f} s ({notebook_seconds / fkd_seconds:.0f}x slower); "
          f"reload from .npy cache {cache_seconds:.3f} s", flush=True)


def run(args):
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown or not sections:
        raise FkdError(f"--only {args.only!r}: {'unknown section ' + repr(unknown[0]) if unknown else 'no section'}; "
                       f"the sections are {', '.join(SECTIONS)}")
    data_dir = find_data_dir(args.data_dir)
    print(f"bench on {data_dir}", flush=True)
    if "parse" in sections:
        bench_parse(data_dir, args.rows)
    if "throughput" in sections:
        from fkd.bench_train import bench_throughput
        bench_throughput(data_dir)
    if "cv" in sections:
        from fkd.bench_train import bench_cv
        quick = args.quick and args.cv_configs == FULL_CV_CONFIGS
        bench_cv(data_dir, QUICK_CV_CONFIGS if quick else args.cv_configs, args.runs_dir)
    return 0
