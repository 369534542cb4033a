"""`fkd bench`: figures for speed and accuracy, each next to its baseline measured in the same run.

  parse       training.csv parse time (fkd vs the notebook way) and cache reload time
  throughput  training images/second of seedcnn: fkd's loop vs a plain PyTorch DataLoader loop
  cv          CV RMSE of the mean shape, the `seed` recipe, seedcnn/lenet with fkd's recipe, the CPU recipe
  face        a run's fold-0 model on its own validation faces: as 96-px crops, placed in cluttered
              photos, and in their real photos (../shared/data/photos) through `fkd face` (detection
              rate, RMSE, seconds a photo); video frames/s; ONNX vs torch latency
"""
import copy
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from fkd.core.config import load_config
from fkd.core.errors import FkdError
from fkd.core.keypoints import COLUMNS
from fkd.core.metrics import mean_shape, rmse, rmse_report
from fkd.data.competition import (
    cache_dir,
    find_data_dir,
    load_training,
    parse_training,
    read_bytes,
    source_file,
)
from fkd.data.folds import load_folds

SECTIONS = ("parse", "throughput", "cv", "face")
KAGGLE_TRAINING_ROWS = 7049
FULL_CV_CONFIGS = ["configs/seed.yaml@1", "configs/seedcnn.yaml@1", "configs/lenet.yaml@1", "configs/cpu.yaml"]
QUICK_CV_CONFIGS = ["configs/demo-proxy.yaml@1"]  # fold 0 of the demo recipe: about a minute on the proxy
FULL_FACE_PHOTOS, QUICK_FACE_PHOTOS = 200, 60
FULL_REAL_PHOTOS, QUICK_REAL_PHOTOS = None, 40   # real photos of fold 0's faces (None: all of them)
ENLARGED, ENLARGED_PHOTOS = 3.2, 10   # the first real photos enlarged to several megapixels: seconds a photo
FULL_FRAMER, QUICK_FRAMER = (20, 6), (10, 3)  # the face section's framer: (epochs, misframed crops a face)


def add_arguments(parser):
    parser.add_argument("--data-dir", help="competition folder (make bench uses ../shared/data/proxy)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {SECTIONS}")
    parser.add_argument("--runs-dir", default="runs/bench", help="where the cv section's runs go")
    parser.add_argument("--rows", type=int, default=KAGGLE_TRAINING_ROWS,
                        help="rows of the csv the parse section times (Kaggle's training.csv has 7,049)")
    parser.add_argument("--quick", action="store_true",
                        help=f"the short figures (about 20 minutes on 2 cores, most of it the face section's framer): the cv section runs only "
                             f"{' '.join(QUICK_CV_CONFIGS)} (make bench; make bench FULL=1 runs everything)")
    parser.add_argument("--face-run", help="the run the face section measures (default: the cv section's last run)")
    parser.add_argument("--face-photos", type=int,
                        help=f"photos the face section makes (default {FULL_FACE_PHOTOS}; {QUICK_FACE_PHOTOS} with --quick)")
    parser.add_argument("--photos-dir",
                        help="real photos of the training faces with labels.csv (default: photos/ beside the data folder)")
    parser.add_argument("--framer-epochs", type=int,
                        help=f"epochs of the face section's framer (default {FULL_FRAMER[0]}; {QUICK_FRAMER[0]} with "
                             "--quick; 0: none)")
    parser.add_argument("--cv-configs", nargs="+", default=FULL_CV_CONFIGS,
                        help="configs the cv section cross-validates after the mean shape; CONFIG@N trains "
                             "only its first N folds (the baselines, to keep the benchmark short)")


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


def mean_submission_seconds(folder: Path) -> float:
    """Seconds of a whole `fkd submit --model mean` process on the folder, as a user runs it."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fkd", "submit", "--data-dir", str(folder), "--model", "mean",
                    "--out-dir", str(folder / "submissions")], check=True, capture_output=True)
    return time.perf_counter() - started


def bench_parse(data_dir, rows: int = KAGGLE_TRAINING_ROWS) -> None:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        path = kaggle_sized_csv(data_dir, folder, rows)
        test_file = source_file(data_dir, "test")
        shutil.copyfile(test_file, folder / test_file.name)
        shutil.copyfile(Path(data_dir) / "IdLookupTable.csv", folder / "IdLookupTable.csv")
        size = path.stat().st_size / 1e6
        raw = path.read_bytes()
        parse_training(raw[:200_000].rsplit(b"\n", 1)[0] + b"\n")  # compile (or load) the parser first
        fkd_seconds = best_of(lambda: parse_training(path.read_bytes(), path))
        notebook_seconds = best_of(lambda: notebook_parse(path), repeats=1)
        cold = []
        for _ in range(2):
            shutil.rmtree(cache_dir(folder))
            cold.append(mean_submission_seconds(folder))  # parses both files, writes the .npy cache
        cache_seconds = best_of(lambda: load_training(folder))
        warm = min(mean_submission_seconds(folder) for _ in range(3))
    print(f"parse  {rows} rows, {size:.0f} MB csv: fkd {fkd_seconds:.2f} s, "
          f"notebook way {notebook_seconds:.2f} s ({notebook_seconds / fkd_seconds:.0f}x slower); "
          f"reload from .npy cache {cache_seconds:.3f} s", flush=True)
    print(f"parse  `fkd submit --model mean`, the whole process: cold (no .npy cache) {min(cold):.2f} s, "
          f"{notebook_seconds / min(cold):.1f}x faster than the notebook way's parse of training.csv alone; "
          f"cached {warm:.2f} s", flush=True)


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
        bench_throughput(data_dir)
    configs = QUICK_CV_CONFIGS if args.quick and args.cv_configs == FULL_CV_CONFIGS else args.cv_configs
    if "cv" in sections:
        bench_cv(data_dir, configs, args.runs_dir)
    if "face" in sections:
        run_dir = Path(args.face_run or Path(args.runs_dir) / load_config(configs[-1].partition("@")[0])["name"])
        if not (run_dir / "fold0.pt").is_file():
            raise FkdError(f"the face section needs a run with a fold0.pt: {run_dir} has none (run the cv "
                           "section first, or name one with --face-run)")
        framer_epochs, framer_variants = QUICK_FRAMER if args.quick else FULL_FRAMER
        bench_face(data_dir, run_dir, args.face_photos or (QUICK_FACE_PHOTOS if args.quick else FULL_FACE_PHOTOS),
                   framer_epochs=framer_epochs if args.framer_epochs is None else args.framer_epochs,
                   framer_variants=framer_variants, photos_dir=Path(args.photos_dir or data_dir.parent / "photos"),
                   real_photos=QUICK_REAL_PHOTOS if args.quick else FULL_REAL_PHOTOS)
    return 0


THROUGHPUT_ROWS = 2048


def _plain_pytorch_epoch(model, optimizer, images: np.ndarray, labels: np.ndarray, batch_size: int) -> None:
    """The textbook loop: float tensors in a TensorDataset, a shuffling DataLoader, MSE on filled labels."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    x = torch.from_numpy(images).float().unsqueeze(1) / 255.0
    y = (torch.from_numpy(np.nan_to_num(labels, nan=48.0)) - 48.0) / 48.0
    model.train()
    for xb, yb in DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True, drop_last=True):
        loss = torch.nn.functional.mse_loss(model(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def bench_throughput(data_dir, model_name: str = "seedcnn", repeats: int = 2) -> None:
    # torch only for the sections that train: `fkd bench --only parse` stays light
    import torch

    from fkd.core.config import DEFAULT_AUGMENT
    from fkd.model.inputs import cpu_has_bf16, make_model
    from fkd.model.nets import build_model
    from fkd.data.mirror import estimate_flip_axis
    from fkd.train.loop import (
        make_optimizer,
        make_schedule,
        steps_per_epoch,
        train_epoch,
    )

    images, keypoints = load_training(data_dir)
    images, keypoints = images[:THROUGHPUT_ROWS], keypoints[:THROUGHPUT_ROWS]
    results = {}
    axes = estimate_flip_axis(images, keypoints)  # what `flip_axis: auto` trains with, once for every loop
    loops = [("fkd loop, no augmentation, precision fp32", {}, "fp32"),
             ("fkd loop, default augmentation, precision fp32", DEFAULT_AUGMENT, "fp32")]
    if cpu_has_bf16():
        loops.append(("fkd loop, default augmentation, precision bf16", DEFAULT_AUGMENT, "bf16"))
    for label, augment, precision in loops:
        config = load_config(None, model=model_name, epochs=repeats, augment=dict(augment), precision=precision,
                             flip_axis=axes)
        torch.manual_seed(0)
        model = make_model(config)
        optimizer = make_optimizer(model, config)
        schedule = make_schedule(optimizer, config, steps_per_epoch(len(images), config))
        generator = torch.Generator().manual_seed(0)
        x, y = torch.from_numpy(images), torch.from_numpy(keypoints)
        seconds = best_of(lambda: train_epoch(model, optimizer, schedule, x, y, config, generator), repeats)
        results[label] = len(images) // config["batch_size"] * config["batch_size"] / seconds
    torch.manual_seed(0)
    model = build_model(model_name)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    seconds = best_of(lambda: _plain_pytorch_epoch(model, optimizer, images, keypoints, 64), repeats)
    plain = len(images) // 64 * 64 / seconds
    for label, rate in results.items():
        print(f"throughput  {model_name} on {torch.get_num_threads()} CPU threads, {label}: {rate:.0f} images/s "
              f"({rate / plain:.2f}x the plain loop)", flush=True)
    print(f"throughput  {model_name} on {torch.get_num_threads()} CPU threads, plain PyTorch DataLoader loop: "
          f"{plain:.0f} images/s", flush=True)


def mean_shape_cv(data_dir, k: int = 5, seed: int = 0) -> float:
    """CV RMSE of predicting each fold with the mean shape of the other folds."""
    _, keypoints = load_training(data_dir)
    folds = load_folds(data_dir, k, seed)
    oof = np.empty_like(keypoints)
    for fold in range(k):
        oof[folds == fold] = mean_shape(keypoints[folds != fold])
    return rmse(oof, keypoints)


def finished_fold_scores(run_dir, truth) -> dict:
    """RMSE over the validation rows of the folds a run has finished (all of them, or a few)."""
    from fkd.train.checkpoint import load as load_checkpoint

    rows, predictions, seconds, folds = [], [], 0.0, []
    for path in sorted(run_dir.glob("fold*.pt")):
        checkpoint = load_checkpoint(path)
        rows.append(checkpoint["valid_index"])
        predictions.append(checkpoint["val_pred"])
        seconds += checkpoint.get("seconds", 0.0)
        folds.append(checkpoint["fold"])
    rows, predictions = np.concatenate(rows), np.concatenate(predictions)
    report = rmse_report(predictions, truth[rows])
    return {**report, "folds_done": folds, "train_seconds": seconds}


def bench_cv(data_dir, config_specs, runs_dir) -> None:
    """config_specs: "configs/x.yaml" (every fold) or "configs/x.yaml@N" (its first N folds only)."""
    from pathlib import Path

    from fkd.train.cv import run_cv

    _, truth = load_training(data_dir)
    baseline = mean_shape_cv(data_dir)
    print(f"cv  mean shape: RMSE {baseline:.4f} (5 folds)", flush=True)
    for spec in config_specs:
        path, _, n_folds = spec.partition("@")
        config = load_config(path)
        if n_folds:
            config["only_folds"] = list(range(int(n_folds)))
        started = time.perf_counter()
        run_dir = Path(run_cv(data_dir, config, runs_dir))
        scores = finished_fold_scores(run_dir, truth)
        print(f"cv  {path}: RMSE {scores['rmse']:.4f} = {scores['rmse'] / baseline:.3f} x mean shape "
              f"(complete rows {scores['rmse_complete']:.4f}, partial rows {scores['rmse_partial']:.4f}; "
              f"folds {scores['folds_done']} of {config['folds']}, {config['epochs']} epochs, "
              f"model {config['model']}; training {scores['train_seconds']:.0f} s, "
              f"this call {time.perf_counter() - started:.0f} s)", flush=True)


FACES_IN_A_PHOTO = 3   # the face measured and two others
FOUND_WITHIN = 0.35    # a located face whose crop centre is this close (in face sides) to the true centre


class FoldModel:
    """One fold checkpoint as `fkd face` predictors are called: crops -> complete-kind keypoints."""

    def __init__(self, run_dir, fold: int = 0):
        from fkd.train.predict import load_run_fold
        from fkd.train.rundir import read_framing

        self.model, self.config = load_run_fold(run_dir, fold)
        self.framing = read_framing(run_dir)
        self.landmark_goal = self.framer = None  # bench_face calibrates on the fold's own training faces

    def __call__(self, crops):
        from fkd.train.predict import predict_images

        return predict_images(self.model, crops, self.config, flip_tta=self.config["flip_tta"])


def squared_errors(predicted, truth):
    """(sum of squared errors over the labelled values, how many values)."""
    present = ~np.isnan(truth)
    return float(((np.asarray(predicted) - truth)[present] ** 2).sum()), int(present.sum())


def score_real_photos(table, images, truth, predict, enlarge: float = 1.0) -> dict:
    """`fkd face` on each labelled photo of the table (resized by `enlarge`), its face scored in its true
    crop against the same model on the face's 96-px crop (and, with a framer, on MTCNN's framing alone):
    found (share), rmse_photo, rmse_crop, rmse_alone, seconds (a photo, locate only), megapixels."""
    from fkd.photo.geometry import compose, crop, invert, resize_matrix, to_gray
    from fkd.photo.labelled import in_true_crop, matching_face, true_crop_matrix
    from fkd.photo.locate import locate, read_photo

    sums = {"photo": [0.0, 0], "crop": [0.0, 0], "alone": [0.0, 0]}
    found, seconds, pixels = [], 0.0, 0
    for _, labels in table.iterrows():
        row = int(labels["training_row"])
        true_matrix = true_crop_matrix(labels[COLUMNS].to_numpy(np.float64), truth[row])
        photo = read_photo(labels["path"])
        if enlarge != 1.0:
            photo = cv2.resize(photo, None, fx=enlarge, fy=enlarge, interpolation=cv2.INTER_CUBIC)
            true_matrix = compose(true_matrix, invert(resize_matrix(enlarge)))
        started = time.perf_counter()
        located = locate(photo, predict)
        seconds += time.perf_counter() - started
        pixels += photo.shape[0] * photo.shape[1]
        k = matching_face(located.matrices, true_matrix, FOUND_WITHIN)
        found.append(k is not None)
        if k is None:
            continue
        measured = {"photo": in_true_crop(located.predictions[k], located.matrices[k], true_matrix),
                    "crop": predict(images[row][None])[0]}
        if predict.framer is not None:
            detected = located.detected[k]
            measured["alone"] = in_true_crop(predict(crop(to_gray(photo), detected)[None])[0], detected, true_matrix)
        for name, predicted in measured.items():
            error, count = squared_errors(predicted, truth[row])
            sums[name][0] += error
            sums[name][1] += count
    rmses = {f"rmse_{name}": np.sqrt(s[0] / s[1]) if s[1] else float("nan") for name, s in sums.items()}
    return {"found": float(np.mean(found)), **rmses, "seconds": seconds / len(table),
            "megapixels": pixels / len(table) / 1e6}


def bench_real_photos(photos_dir, images, truth, valid_index, predict, n_photos=None, seed: int = 0) -> None:
    """fkd face on the real photos of fold 0's validation faces, scored in each face's true crop against
    the same model on the face's 96-px crop; with the framer, also MTCNN's framing alone; with a
    landmark goal, also the photos without `fkd calibrate`; then the first of them enlarged to several
    megapixels."""
    from fkd.photo.labelled import read_labelled_photos

    table = read_labelled_photos(photos_dir)
    table = table[table["training_row"].isin(valid_index)]
    if n_photos is not None and n_photos < len(table):
        table = table.sample(n_photos, random_state=seed)
    score = score_real_photos(table, images, truth, predict)
    crop_rmse = score["rmse_crop"]
    print(f"face  real photos: {len(table)} photos ({score['megapixels']:.2f} megapixels on average) of "
          f"fold 0's validation faces, {photos_dir}: found {100 * score['found']:.1f}%; RMSE on the photos "
          f"{score['rmse_photo']:.4f} px (in each face's true crop) against {crop_rmse:.4f} on the same faces' crops "
          f"({score['rmse_photo'] / crop_rmse:.3f}x); {score['seconds']:.2f} s a photo", flush=True)
    if predict.framer is not None:
        print(f"face  real photos, framed by MTCNN's landmarks alone (no framer): {score['rmse_alone']:.4f} px "
              f"({score['rmse_alone'] / crop_rmse:.3f}x the crops)", flush=True)
    if predict.landmark_goal is not None:   # what `fkd calibrate` pays: the same photos uncalibrated
        uncalibrated = copy.copy(predict)
        uncalibrated.landmark_goal = uncalibrated.framer = None
        plain = score_real_photos(table, images, truth, uncalibrated)
        print(f"face  real photos without fkd calibrate (MTCNN's points put where the labels are, no framer): "
              f"found {100 * plain['found']:.1f}%; {plain['rmse_photo']:.4f} px ({plain['rmse_photo'] / crop_rmse:.3f}x "
              f"the crops)", flush=True)
    enlarged_table = table[:ENLARGED_PHOTOS]
    enlarged = score_real_photos(enlarged_table, images, truth, predict, enlarge=ENLARGED)
    print(f"face  real photos enlarged {ENLARGED:g}x ({enlarged['megapixels']:.1f} megapixels on average, the first "
          f"{len(enlarged_table)}): found {100 * enlarged['found']:.1f}%; {enlarged['rmse_photo']:.4f} px "
          f"({enlarged['rmse_photo'] / enlarged['rmse_crop']:.3f}x the crops); {enlarged['seconds']:.2f} s a photo",
          flush=True)


def bench_face(data_dir, run_dir, n_photos: int = 200, seed: int = 0, framer_epochs: int = 20,
               framer_variants: int = 6, photos_dir=None, real_photos=None) -> None:
    """Photos as good as the crops? Fold 0's model on its own validation faces, first as the 96-px crops
    the training faces are, then each face enlarged 1.5-3.5x, turned by up to 25 degrees and placed with
    two other faces on clutter in an 800x600 photo, through fkd face's detection and refinement, MTCNN's
    crops framed to where it puts its landmarks on the fold's training faces and then by a framer
    trained on them (`fkd calibrate`); the photos' figure is also given without the framer."""
    from fkd.photo.detect import mtcnn_available
    from fkd.photo.frame import calibrate_framer, calibrate_landmarks
    from fkd.photo.geometry import apply, crop, invert, keypoints_to_photo
    from fkd.photo.locate import locate
    from fkd.photo.scenes import scene
    from fkd.photo.track import FaceTracker
    from fkd.submit.export import export_onnx
    from fkd.train.checkpoint import load as load_checkpoint

    images, truth = load_training(data_dir)
    rng = np.random.default_rng(seed)
    valid_index = load_checkpoint(Path(run_dir) / "fold0.pt")["valid_index"]
    rows = rng.choice(valid_index, n_photos, replace=False)
    predict = FoldModel(run_dir)
    on_crops = predict(images[rows])
    if mtcnn_available():
        started = time.perf_counter()
        training_rows = np.setdiff1d(np.arange(len(images)), valid_index)
        try:
            predict.landmark_goal, calibrated = calibrate_landmarks(images[training_rows], seed + 1, n_photos)
            told = f"MTCNN found {calibrated} of {n_photos} training faces of fold 0"
        except FkdError as error:  # faces MTCNN does not take for faces (synthetic ones): framed as before
            told = f"{error}; the crops are framed to the labels' positions"
        print(f"face  calibration: {told} ({time.perf_counter() - started:.0f} s)", flush=True)
        if framer_epochs and predict.landmark_goal is not None:
            started = time.perf_counter()
            predict.framer = calibrate_framer(images[training_rows], truth[training_rows],
                                              predict.config["flip_axis"], seed + 2, framer_variants,
                                              framer_epochs, log=lambda line: None)
            print(f"face  framer: trained {framer_epochs} epochs on {framer_variants} misframed crops of each of "
                  f"fold 0's training faces "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
    crop_sums, photo_sums, detected_sums = [0.0, 0], [0.0, 0], [0.0, 0]
    found, seconds = [], 0.0
    for row, crop_prediction in zip(rows, on_crops):
        others = rng.choice(len(images), FACES_IN_A_PHOTO - 1, replace=False)
        photo, matrices = scene(images[[row, *others]], rng)
        started = time.perf_counter()
        located = locate(photo, predict)
        seconds += time.perf_counter() - started
        centre = apply(matrices[0], [47.5, 47.5])
        side = 96 * np.sqrt(abs(np.linalg.det(matrices[0][:, :2])))
        centres = [apply(invert(m), [47.5, 47.5]) for m in located.matrices]
        distances = [np.hypot(*(c - centre)) / side for c in centres]
        if not distances or min(distances) > FOUND_WITHIN:
            found.append(False)
            continue
        k = int(np.argmin(distances))
        in_face = apply(invert(matrices[0]), keypoints_to_photo(located.predictions[k], located.matrices[k]))
        measured = [(photo_sums, in_face.reshape(-1)), (crop_sums, crop_prediction)]
        if predict.framer is not None:  # the same face framed by MTCNN's landmarks alone
            detected = located.detected[k]
            unframed = keypoints_to_photo(predict(crop(photo, detected)[None])[0], detected)
            measured.append((detected_sums, apply(invert(matrices[0]), unframed).reshape(-1)))
        for sums, predicted in measured:
            error, count = squared_errors(predicted, truth[row])
            sums[0] += error
            sums[1] += count
        found.append(True)
    crop_rmse, photo_rmse, detected_rmse = (np.sqrt(sums[0] / sums[1]) if sums[1] else float("nan")
                                            for sums in (crop_sums, photo_sums, detected_sums))
    all_crops = np.sqrt(squared_errors(on_crops, truth[rows])[0] / squared_errors(on_crops, truth[rows])[1])
    print(f"face  {run_dir} fold 0 on {n_photos} of its validation faces, each in an 800x600 photo with "
          f"{FACES_IN_A_PHOTO - 1} other faces and clutter (enlarged 1.5-3.5x, turned up to 25 degrees): found "
          f"{100 * np.mean(found):.1f}%; RMSE on the photos {photo_rmse:.4f} px against {crop_rmse:.4f} on the "
          f"same faces' crops ({photo_rmse / crop_rmse:.3f}x; all {n_photos} crops {all_crops:.4f}); "
          f"{seconds / n_photos:.2f} s a photo", flush=True)
    print(f"face  framer: on the photos {photo_rmse:.4f} px with it, {detected_rmse:.4f} ({detected_rmse / crop_rmse:.3f}x "
          f"the crops) framed by MTCNN's landmarks alone" if predict.framer is not None else
          "face  framer: none (no MTCNN, or --framer-epochs 0)", flush=True)

    if photos_dir is not None and (photos_dir / "labels.csv").is_file():
        bench_real_photos(photos_dir, images, truth, valid_index, predict, real_photos, seed)
    else:
        print(f"face  real photos: none ({photos_dir}/labels.csv is absent)", flush=True)

    photo, matrices = scene(images[rows[:1]], rng, width=640, height=480, scales=(2.0, 2.0), max_roll=0)
    tracker = FaceTracker(predict)
    frames = []
    for t in range(60):   # the photo panned 2 px a frame: one face moving through 60 frames
        shift = np.float32([[1, 0, 2 * t - 60], [0, 1, 0]])
        frames.append(cv2.cvtColor(cv2.warpAffine(photo, shift, (640, 480), borderMode=cv2.BORDER_REPLICATE),
                                   cv2.COLOR_GRAY2BGR))
    started = time.perf_counter()
    tracked = [tracker.step(frame) for frame in frames]
    seconds = time.perf_counter() - started
    print(f"face  video: 60 frames of 640x480 with one face, {60 / seconds:.1f} frames/s "
          f"(face seen in {sum(bool(t) for t in tracked)} frames, {tracker.detections} detection passes)", flush=True)

    with tempfile.TemporaryDirectory() as folder:
        figures = export_onnx([run_dir], Path(folder) / "model.onnx", [1.0])
    print(f"face  onnx: {run_dir} ({figures['models']} fold model(s), {figures['forward_passes']} forward passes a face) "
          f"max difference {figures['max_difference_px']:.1e} px; per face {figures['onnx_ms']:.2f} ms with "
          f"onnxruntime against {figures['torch_ms']:.2f} ms with torch in a batch of {figures['faces_checked']}, "
          f"{figures['onnx_ms_batch1']:.2f} against {figures['torch_ms_batch1']:.2f} ms alone", flush=True)

