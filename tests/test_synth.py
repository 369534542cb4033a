"""fkd.synth: a synthetic competition folder in Kaggle's exact format, with faces drawn at their keypoints.

The CSVs are read back with pandas (not fkd.data) so these tests check the format on their own.
"""
import hashlib
import json

import cv2
import numpy as np
import pandas as pd
import pytest

from fkd import cli
from fkd.core.keypoints import COLUMNS, CORE_COLUMNS, KEYPOINTS
from fkd.data import synth

N_TRAIN, N_TEST, SEED = 200, 20, 3
FILES = {"training.csv", "test.csv", "IdLookupTable.csv", "SampleSubmission.csv"}
WRITTEN = FILES | {"synth.json"}  # the four, then the marker that says fkd synth wrote them


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return synth.write_competition(tmp_path_factory.mktemp("synth"), N_TRAIN, N_TEST, SEED)


@pytest.fixture(scope="module")
def training(folder):
    return pd.read_csv(folder / "training.csv")


@pytest.fixture(scope="module")
def lookup(folder):
    return pd.read_csv(folder / "IdLookupTable.csv")


def pixels(frame):
    return np.stack([np.array(s.split(), dtype=np.int64) for s in frame["Image"]])


def test_files_and_headers(folder):
    assert {p.name for p in folder.iterdir()} == WRITTEN  # no temporary files left behind
    first = {name: (folder / name).read_text().split("\n", 1)[0] for name in FILES}
    assert first["training.csv"] == ",".join(COLUMNS) + ",Image"
    assert first["test.csv"] == "ImageId,Image"
    assert first["IdLookupTable.csv"] == "RowId,ImageId,FeatureName,Location"
    assert first["SampleSubmission.csv"] == "RowId,Location"


def test_rows_and_pixels(folder, training):
    test = pd.read_csv(folder / "test.csv")
    assert len(training) == N_TRAIN and len(test) == N_TEST
    assert test["ImageId"].tolist() == list(range(1, N_TEST + 1))
    for frame in (training, test):
        values = pixels(frame)
        assert values.shape == (len(frame), 96 * 96)
        assert values.min() >= 0 and values.max() <= 255
        assert values.std() > 20  # images, not a constant


def test_keypoints_written_with_4_exact_decimals(folder, training):
    line = (folder / "training.csv").read_text().split("\n")[1]
    fields = line.split(",")[:30]
    assert all(f == "" or (len(f.split(".")[1]) == 4 and float(f) >= 0) for f in fields)
    comp = synth.make_competition(N_TRAIN, N_TEST, SEED)  # the arrays behind the folder
    np.testing.assert_array_equal(training[COLUMNS].to_numpy(), comp.train_keypoints.astype(np.float64))
    np.testing.assert_array_equal(pixels(training).reshape(-1, 96, 96), comp.train_images)


def test_complete_and_partial_rows(training):
    present = training[COLUMNS].notna().to_numpy()
    complete = present.all(axis=1)
    assert complete.sum() == round(0.3 * N_TRAIN)
    core = np.isin(COLUMNS, CORE_COLUMNS)
    assert (present[~complete] == core).all()  # partial rows: exactly the 8 core values


def test_lookup_and_sample_submission(folder, lookup):
    assert lookup["RowId"].tolist() == list(range(1, len(lookup) + 1))
    assert lookup["Location"].isna().all()
    ids = lookup["ImageId"].to_numpy()
    assert (np.diff(ids) >= 0).all()  # grouped by image, in order
    assert sorted(set(ids)) == list(range(1, N_TEST + 1))
    n_full = 0
    for _, rows in lookup.groupby("ImageId"):
        names = rows["FeatureName"].tolist()
        assert names in (COLUMNS, CORE_COLUMNS)  # Kaggle's column order
        n_full += names == COLUMNS
    assert n_full == round(0.3 * N_TEST)
    sample = pd.read_csv(folder / "SampleSubmission.csv")
    assert sample["RowId"].tolist() == lookup["RowId"].tolist()
    assert (sample["Location"] == 0).all()


def test_deterministic_for_a_seed(tmp_path):
    a = synth.write_competition(tmp_path / "a", 30, 5, seed=7)
    b = synth.write_competition(tmp_path / "b", 30, 5, seed=7)
    c = synth.write_competition(tmp_path / "c", 30, 5, seed=8)
    for name in FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / "training.csv").read_bytes() != (c / "training.csv").read_bytes()
    assert (a / "test.csv").read_bytes() != (c / "test.csv").read_bytes()


def test_duplicate_images(training):
    hashes = [hashlib.sha1(s.encode()).hexdigest() for s in training["Image"]]
    frame = pd.DataFrame({"hash": hashes})
    repeated = frame.duplicated("hash")
    assert repeated.sum() == round(0.02 * N_TRAIN)
    keypoints = training[COLUMNS].to_numpy()
    first = {h: i for i, h in reversed(list(enumerate(hashes)))}
    for row in np.flatnonzero(repeated):
        both = ~np.isnan(keypoints[row]) & ~np.isnan(keypoints[first[hashes[row]]])
        assert np.abs(keypoints[row, both] - keypoints[first[hashes[row]], both]).max() < 4  # same face


def test_left_is_image_right_and_inside(training):
    k = training[COLUMNS]
    assert (k["left_eye_center_x"] > k["right_eye_center_x"]).all()
    full = k.dropna()
    assert len(full) > 0
    order = ["left_eye_outer_corner_x", "left_eye_center_x", "left_eye_inner_corner_x",
             "right_eye_inner_corner_x", "right_eye_center_x", "right_eye_outer_corner_x"]
    for a, b in zip(order, order[1:]):
        assert (full[a] > full[b]).all(), (a, b)
    assert (full["left_eyebrow_outer_end_x"] > full["left_eyebrow_inner_end_x"]).all()
    assert (full["mouth_left_corner_x"] > full["mouth_right_corner_x"]).all()
    assert (full["left_eyebrow_inner_end_y"] < full["left_eye_center_y"]).all()
    assert (full["mouth_center_top_lip_y"] < full["mouth_center_bottom_lip_y"]).all()
    values = k.to_numpy()
    values = values[~np.isnan(values)]
    assert values.min() >= 0 and values.max() <= 95


def test_mean_layout_like_kaggle_and_varied():
    images, keypoints = synth.draw_faces(300, np.random.default_rng(0))
    assert images.shape == (300, 96, 96) and images.dtype == np.uint8
    assert keypoints.shape == (300, 30) and keypoints.dtype == np.float32 and not np.isnan(keypoints).any()
    mean = dict(zip(COLUMNS, keypoints.mean(axis=0)))
    for name, x, y in [("left_eye_center", 66, 37), ("right_eye_center", 30, 37),
                       ("nose_tip", 48, 62), ("mouth_center_bottom_lip", 48, 80)]:
        assert abs(mean[f"{name}_x"] - x) < 2.5 and abs(mean[f"{name}_y"] - y) < 2.5, name
    mean_shape_rmse = np.sqrt(((keypoints - keypoints.mean(axis=0)) ** 2).mean())
    assert mean_shape_rmse > 3  # guessing the mean shape is poor


def _window(image, x, y, r):
    x, y = int(round(x)), int(round(y))
    return image[max(0, y - r): y + r + 1, max(0, x - r): x + r + 1].astype(np.float64)


def test_features_are_drawn_at_the_keypoints():
    images, keypoints = synth.draw_faces(60, np.random.default_rng(1))
    points = keypoints.reshape(-1, 15, 2)
    at = {name: i for i, name in enumerate(KEYPOINTS)}
    nose_bright = pupil_darkest = 0
    for image, p in zip(images, points):
        for side in ("left", "right"):
            x, y = p[at[f"{side}_eye_center"]]
            around = _window(image, x, y, 10)
            pupil = image[int(round(y)), int(round(x))]
            assert pupil < np.median(around)
            pupil_darkest += pupil < np.percentile(around, 25)
            inner, outer = p[at[f"{side}_eyebrow_inner_end"]], p[at[f"{side}_eyebrow_outer_end"]]
            bx, by = inner + 0.08 * (outer - inner)  # just inside the eyebrow's inner end
            assert _window(image, bx, by, 0).item() < np.median(_window(image, bx, by, 10))
        mx, my = (p[at["mouth_center_top_lip"]] + p[at["mouth_center_bottom_lip"]]) / 2
        assert _window(image, mx, my, 1).min() < np.median(_window(image, mx, my, 12))  # lips
        nx, ny = p[at["nose_tip"]]
        nose_bright += _window(image, nx, ny, 1).max() > np.median(_window(image, nx, ny, 10))  # highlight
    assert pupil_darkest >= 0.95 * 2 * len(images)
    assert nose_bright >= 0.9 * len(images)


def test_command_line(tmp_path, capsys):
    assert cli.main(["synth", "--out", str(tmp_path / "c"), "--train", "12", "--test", "3", "--seed", "1"]) == 0
    assert {p.name for p in (tmp_path / "c").iterdir()} == WRITTEN
    assert len(pd.read_csv(tmp_path / "c" / "training.csv")) == 12
    with pytest.raises(SystemExit) as stop:
        cli.main(["synth", "--out", str(tmp_path / "d"), "--train", "0"])
    assert stop.value.code == 2 and "argument --train: must be at least 1, not 0" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("option, value, says", [("--seed", "-1", "must be at least 0, not -1"),
                                                 ("--test", "-2", "must be at least 1, not -2"),
                                                 ("--train", "ten", "must be a whole number, not 'ten'")])
def test_synth_options_out_of_range_are_usage_errors(option, value, says, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["synth", "--out", str(tmp_path / "c"), option, value])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"argument {option}: {says}" in err[0], err
    assert not (tmp_path / "c").exists()


# ---------------------------------------------------------------- never over a competition folder

def _synth(folder, *extra, seed=1):
    return cli.main(["synth", "--out", str(folder), "--train", "12", "--test", "3", "--seed", str(seed), *extra])


def _contents(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def _refused(capsys, folder, *words):
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and str(folder) in err and "Traceback" not in err, err
    assert all(word in err for word in words), err


def test_the_marker_says_what_synth_wrote(tmp_path):
    folder = synth.write_competition(tmp_path / "c", 12, 3, seed=4)
    marker = json.loads((folder / "synth.json").read_text())
    assert (marker["written_by"], marker["seed"], marker["train"], marker["test"], marker["complete"]) == \
        ("fkd synth", 4, 12, 3, True)
    assert marker["files"] == {name: [hashlib.sha256((folder / name).read_bytes()).hexdigest()] for name in FILES}


@pytest.mark.parametrize("name", sorted(FILES) + ["training.zip"])
def test_a_folder_synth_did_not_write_is_refused_even_with_force(tmp_path, capsys, name):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / name).write_bytes(b"the user's own competition file\n")
    before = _contents(folder)
    for extra in ([], ["--force"]):
        assert _synth(folder, *extra) == 2
        _refused(capsys, folder, name, "not written by `fkd synth`")
        assert _contents(folder) == before  # byte for byte, and nothing added


def test_a_forged_marker_does_not_make_a_folder_synth_s(tmp_path, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "training.csv").write_bytes(b"real,training,rows\n")
    (folder / "synth.json").write_text(json.dumps({"written_by": "fkd synth", "files": {}}))
    before = _contents(folder)
    assert _synth(folder, "--force") == 2
    _refused(capsys, folder, "training.csv", "changed since")
    assert _contents(folder) == before
    (folder / "synth.json").write_text("{damaged")
    assert _synth(folder, "--force") == 2
    _refused(capsys, folder, "not written by `fkd synth`")
    assert (folder / "training.csv").read_bytes() == b"real,training,rows\n"


def test_synth_over_its_own_folder_needs_force(tmp_path, capsys):
    folder = tmp_path / "demo"
    assert _synth(folder, seed=1) == 0  # a new folder needs no --force
    first = _contents(folder)
    assert _synth(folder, seed=2) == 2
    _refused(capsys, folder, "--force")
    assert _contents(folder) == first
    assert _synth(folder, "--force", seed=2) == 0  # replaced
    second = _contents(folder)
    assert set(second) == WRITTEN and second["training.csv"] != first["training.csv"]
    assert json.loads(second["synth.json"])["seed"] == 2
    assert _synth(folder, "--force", seed=2) == 0  # and again (make demo, rerun)
    assert _contents(folder) == second


def test_real_data_downloaded_over_a_synth_folder_is_never_replaced(tmp_path, capsys):
    folder = tmp_path / "data"
    assert _synth(folder) == 0
    (folder / "training.csv").write_bytes(b"the real training.csv\n")  # `fkd kaggle download --force` into it
    before = _contents(folder)
    assert _synth(folder, "--force") == 2
    _refused(capsys, folder, "training.csv", "changed since")
    assert _contents(folder) == before


def test_a_rewrite_cut_short_is_still_synth_s_folder(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "demo"
    assert _synth(folder, seed=1) == 0
    real_write = synth._write

    class Stopped(Exception):
        pass

    def write_then_stop(path, chunks):
        real_write(path, chunks)
        if path.name == "test.csv":
            raise Stopped  # the power goes: training.csv and test.csv are new, the rest old

    monkeypatch.setattr(synth, "_write", write_then_stop)
    with pytest.raises(Stopped):
        synth.write_competition(folder, 12, 3, seed=2, force=True)
    monkeypatch.undo()
    assert _synth(folder, seed=2) == 2  # still needs --force
    _refused(capsys, folder, "--force")
    assert _synth(folder, "--force", seed=2) == 0
    assert json.loads((folder / "synth.json").read_text())["complete"] is True


def test_out_that_is_a_file_is_one_line(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_bytes(b"x")
    assert _synth(target) == 2
    _refused(capsys, target, "not a folder")
    assert target.read_bytes() == b"x"


def test_the_demo_reruns_synth_with_force():
    from pathlib import Path

    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    [line] = [line for line in makefile.splitlines() if " synth --out $(DEMO)/data" in line]
    assert "--force" in line.split()


def test_a_scene_places_every_face_apart_and_says_where():
    from fkd.data.synth import draw_faces
    from fkd.photo.geometry import apply
    from fkd.photo.scenes import scene

    faces, keypoints = draw_faces(3, rng=4)
    photo, matrices = scene(faces, rng=0, width=800, height=600, scales=(1.5, 2.5))
    assert photo.shape == (600, 800) and photo.dtype == np.uint8
    centres = np.array([apply(m, [47.5, 47.5]) for m in matrices])
    assert ((centres > 0) & (centres < [800, 600])).all()
    for i in range(3):
        scale = np.sqrt(abs(np.linalg.det(matrices[i][:, :2])))
        assert 1.5 <= scale <= 2.5
        for j in range(i):
            assert np.abs(centres[i] - centres[j]).max() > 96 * 1.5   # no two faces overlap
        # the face is there: its pixels, sampled back through its matrix, are the face
        back = cv2.warpAffine(photo, cv2.invertAffineTransform(matrices[i]), (96, 96), flags=cv2.INTER_LINEAR)
        assert np.abs(back[10:-10, 10:-10].astype(float) - faces[i][10:-10, 10:-10]).mean() < 8
    _, crowded = scene(draw_faces(6, rng=1)[0], rng=0, width=300, height=300)
    assert crowded[0] is not None and any(m is None for m in crowded)   # no room for them all: the rest are None


def test_a_scene_keeps_every_pixel_of_each_face_out_to_its_edge():
    # a photo holds the whole face, so the bench's crops of it miss nothing the training crops have
    from fkd.data.synth import draw_faces
    from fkd.photo.scenes import scene

    faces, _ = draw_faces(3, rng=4)
    photo, matrices = scene(faces, rng=0, width=1400, height=600, scales=(2.0, 3.0))
    ring = np.ones((96, 96), bool)
    ring[3:-3, 3:-3] = False
    for face, matrix in zip(faces, matrices):
        back = cv2.warpAffine(photo, cv2.invertAffineTransform(matrix), (96, 96), flags=cv2.INTER_LINEAR)
        assert np.abs(back[ring].astype(float) - face[ring]).mean() < 3
