import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fkd.core.errors import FkdError
from fkd.core.keypoints import COLUMNS
from fkd.data import competition as data

REPO = Path(__file__).resolve().parents[1]


def _expected(folder):
    frame = pd.read_csv(folder / "training.csv")
    images = np.stack([np.array(s.split(), dtype=np.uint8) for s in frame["Image"]]).reshape(-1, 96, 96)
    return images, frame[COLUMNS].to_numpy(dtype=np.float32)


def test_training_matches_the_notebook_way(competition):
    images, keypoints = data.parse_training((competition / "training.csv").read_bytes())
    want_images, want_keypoints = _expected(competition)
    assert images.dtype == np.uint8 and images.shape == want_images.shape
    assert np.array_equal(images, want_images)
    assert keypoints.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(keypoints), np.isnan(want_keypoints))
    np.testing.assert_allclose(keypoints, want_keypoints, rtol=0, atol=1e-4)


def test_test_file_and_zip_read_the_same(competition, tmp_path):
    folder = tmp_path / "zipped"
    folder.mkdir()
    for stem in ("training", "test"):
        with zipfile.ZipFile(folder / f"{stem}.zip", "w", zipfile.ZIP_DEFLATED) as archive:
            archive.write(competition / f"{stem}.csv", f"{stem}.csv")
    ids, images = data.load_test(folder)
    frame = pd.read_csv(competition / "test.csv")
    assert np.array_equal(ids, frame["ImageId"].to_numpy())
    assert images.shape == (len(frame), 96, 96)
    zipped = data.load_training(folder)
    plain = data.parse_training((competition / "training.csv").read_bytes())
    assert np.array_equal(zipped[0], plain[0])


def _claiming(path, member, content, claimed):
    """A small zip whose one member says (in both its headers) it unpacks to `claimed` bytes: a zip bomb's
    header without the bomb."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member, content)
    raw = bytearray(path.read_bytes())
    local, central = raw.find(b"PK\x03\x04"), raw.find(b"PK\x01\x02")
    raw[local + 22:local + 26] = claimed.to_bytes(4, "little")
    raw[central + 24:central + 28] = claimed.to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize("stem", ["training", "test"])
def test_a_zip_member_claiming_more_than_a_competition_file_is_refused_before_reading(stem, competition, tmp_path,
                                                                                     monkeypatch):
    folder = tmp_path / "bomb"
    folder.mkdir()
    for name in ("training", "test"):
        shutil.copy(competition / f"{name}.csv", folder / f"{name}.csv")
    (folder / f"{stem}.csv").unlink()
    claimed = 2 ** 31                           # 2 GiB, as 2 GB of '0' deflated to ~2 MB would say
    bomb = _claiming(folder / f"{stem}.zip", f"{stem}.csv", b"0" * 1000, claimed)
    assert bomb.stat().st_size < 2000 and zipfile.ZipFile(bomb).getinfo(f"{stem}.csv").file_size == claimed
    monkeypatch.setattr(zipfile.ZipFile, "read", lambda *a, **k: pytest.fail("read a member past the cap"))
    load = data.load_training if stem == "training" else data.load_test
    with pytest.raises(FkdError) as error:
        load(folder)
    message = str(error.value)
    assert message.startswith(f"{bomb}: {stem}.csv inside would unpack to 2,147,483,648 bytes") and "\n" not in message
    assert f"more than the {data.MAX_ZIP_MEMBER_BYTES:,}" in message and data.MAX_ZIP_MEMBER_BYTES == 2 ** 30


def test_cache_is_reused_then_rebuilt_when_the_source_changes(competition, tmp_path, monkeypatch):
    folder = tmp_path / "c"
    shutil.copytree(competition, folder)
    first = data.load_training(folder)
    assert (data.cache_dir(folder) / "training.images.npy").is_file()

    def refuse(*args):
        raise AssertionError("parsed again although the source did not change")

    monkeypatch.setattr(data, "parse_training", refuse)
    again = data.load_training(folder)
    assert np.array_equal(first[0], again[0])

    monkeypatch.undo()
    lines = (folder / "training.csv").read_text().splitlines(keepends=True)
    (folder / "training.csv").write_text("".join(lines[:11]))  # header + 10 rows
    assert len(data.load_training(folder)[0]) == 10


def _cached_copy(competition, tmp_path):
    """A copy of the competition folder with its training arrays cached, and those arrays."""
    folder = tmp_path / "c"
    shutil.copytree(competition, folder, ignore=shutil.ignore_patterns(".fkd-cache"))
    return folder, data.load_training(folder)


def _assert_rebuilt(folder, truth, capsys):
    images, keypoints = data.load_training(folder)
    assert np.array_equal(images, truth[0])
    np.testing.assert_array_equal(keypoints, truth[1])
    told = capsys.readouterr().err.splitlines()
    assert len(told) == 1 and "cache of training.csv not used" in told[0] and "parsing it again" in told[0]
    data.load_training(folder)  # the rebuilt cache is used again, silently
    assert capsys.readouterr().err == ""


def test_a_forged_cache_array_of_the_right_shape_is_not_used(competition, tmp_path, capsys):
    folder, truth = _cached_copy(competition, tmp_path)
    capsys.readouterr()
    np.save(data.cache_dir(folder) / "training.keypoints.npy", np.full_like(truth[1], 47.0))
    _assert_rebuilt(folder, truth, capsys)


class _OpensAFile:
    """Unpickling this creates a file: what code hidden in a pickled cache could do."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


@pytest.mark.parametrize("damage", ["truncated", "header only", "empty", "stamp not JSON", "stamp a list",
                                    "stamp of another shape", "pickled objects"])
def test_a_damaged_cache_is_rebuilt_from_the_source(damage, competition, tmp_path, capsys):
    folder, truth = _cached_copy(competition, tmp_path)
    capsys.readouterr()
    cache = data.cache_dir(folder)
    images, stamp = cache / "training.images.npy", cache / "training.json"
    marker = tmp_path / "unpickled"
    if damage == "truncated":
        images.write_bytes(images.read_bytes()[:images.stat().st_size // 2])
    elif damage == "header only":
        images.write_bytes(images.read_bytes()[:60])
    elif damage == "empty":
        images.write_bytes(b"")
    elif damage == "stamp not JSON":
        stamp.write_text('{"source_sha256": ')
    elif damage == "stamp a list":
        stamp.write_text("[]")
    elif damage == "stamp of another shape":  # the stamp's shape edited to the forged array's: its digest still differs
        np.save(images, truth[0][:10])
        stamp.write_text(stamp.read_text().replace(f"[{len(truth[0])}, 96, 96]", "[10, 96, 96]"))
    else:
        np.save(images, np.array([_OpensAFile(marker)], dtype=object), allow_pickle=True)
    _assert_rebuilt(folder, truth, capsys)
    assert not marker.exists()


def test_read_only_folder_caches_elsewhere(competition, tmp_path, monkeypatch):
    monkeypatch.setenv("FKD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(data.os, "access", lambda path, mode: False)  # as on /kaggle/input or ../shared
    folder = data.cache_dir(competition)
    assert folder.parent == tmp_path / "cache" and folder.is_dir()
    assert data.cache_dir(competition) == folder


def test_find_data_dir(tmp_path, competition, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FkdError, match="no competition data"):
        data.find_data_dir(search_root=tmp_path / "nothing")
    nested = tmp_path / "input" / "competitions" / "facial-keypoints-detection"
    nested.mkdir(parents=True)
    with zipfile.ZipFile(nested / "training.zip", "w") as archive:
        archive.write(competition / "training.csv", "training.csv")
    assert data.find_data_dir(search_root=tmp_path / "input") == nested
    monkeypatch.setenv("FKD_KAGGLE_INPUT", str(tmp_path / "input"))
    assert data.find_data_dir() == nested
    shutil.copytree(competition, tmp_path / "data")
    assert data.find_data_dir().resolve() == (tmp_path / "data").resolve()
    assert data.find_data_dir(competition) == competition
    with pytest.raises(FkdError, match="no such folder"):
        data.find_data_dir(tmp_path / "missing")


# ------------------------------------------------------------------ malformed input

HEADER = ",".join(COLUMNS + ["Image"])
GOOD_KEYPOINTS = ",".join(["40.5"] * 30)
GOOD_IMAGE = " ".join(["7"] * 9216)


def _training(*rows, header=HEADER):
    return (header + "\n" + "\n".join(rows) + "\n").encode()


def _row(keypoints=GOOD_KEYPOINTS, image=GOOD_IMAGE):
    return f"{keypoints},{image}"


def _image_with(index, value):
    pixels = ["7"] * 9216
    pixels[index] = value
    return " ".join(pixels)


@pytest.mark.parametrize("raw, match", [
    (_training(_row(), header=HEADER.replace("nose_tip_x,", "")), r"header.*missing nose_tip_x"),
    (_training(_row(), header=HEADER.replace("nose_tip_x", "nose_x")),
     r"missing nose_tip_x; unexpected nose_x"),
    (_training(_row(), header=",".join(["Image"] + COLUMNS)), r"columns out of order"),
    (_training(_row(), _row(image=" ".join(["7"] * 9215))), r"row 2 \(line 3\), column Image: 9215 values"),
    (_training(_row(image=" ".join(["7"] * 9217))), r"row 1 \(line 2\), column Image: .*more than 9216"),
    (_training(_row(image=_image_with(17, "256"))), r"column Image: pixel 17: a value above 255"),
    (_training(_row(image=_image_with(3, "12.5"))), r"column Image: pixel 3: a character"),
    (_training(_row(image=_image_with(5, "-1"))), r"column Image: pixel 5: a character"),
    (_training(_row(image=_image_with(9, "x"))), r"column Image: pixel 9: a character"),
    (_training(_row(image=_image_with(9, ""))), r"column Image: pixel 9: an empty value"),
    (_training(_row(), _row(), _row(keypoints=GOOD_KEYPOINTS.replace("40.5", "abc", 1))),
     r"row 3 \(line 4\), column left_eye_center_x: 'abc' is not a finite number"),
    (_training(_row(keypoints=",".join(["40.5"] * 21 + ["inf"] + ["40.5"] * 8))),
     r"column nose_tip_y: 'inf' is not a finite number"),
    (_training(_row(keypoints=",".join(["40.5"] * 29 + ["-inf"]))),
     r"column mouth_center_bottom_lip_y: '-inf' is not a finite number"),
    (_training(_row(keypoints=",".join(["40.5"] * 29 + ["nan"]))),
     r"column mouth_center_bottom_lip_y: 'nan' is not a finite number"),
    (_training(_row(keypoints=",".join(["40.5"] * 29 + ["?"]))).replace(b"?", b"\xff"),
     r"column mouth_center_bottom_lip_y: '.' is not a finite number"),
    (_training(_row(), _row(keypoints=GOOD_KEYPOINTS.replace("40.5", "1e9", 1))),
     r"row 2 \(line 3\), column left_eye_center_x: 1e\+09 is outside the image"),
    (_training(_row(keypoints=",".join(["40.5"] * 21 + ["-40"] + ["40.5"] * 8))),
     r"row 1 \(line 2\), column nose_tip_y: -40 is outside the image \(labels lie in \[-5, 100\] px\)"),
    (_training(_row(keypoints=",".join(["40.5"] * 29))), r"row 1 \(line 2\).*30 fields, expected 31"),
    (b"", r"header"),
    (HEADER.encode() + b"\n", r"no data rows"),
])
@pytest.mark.parametrize("parser", ["numba", "numpy"])
def test_bad_training_file_gets_one_clear_error(raw, match, parser, monkeypatch):
    if parser == "numpy":
        monkeypatch.setattr(data, "_scan_pixels", data._scan_pixels_numpy)
    with pytest.raises(FkdError, match=match) as error:
        data.parse_training(raw, "bad/training.csv")
    message = str(error.value)
    assert message.startswith("bad/training.csv") and "\n" not in message


def test_numpy_parser_reads_what_the_compiled_one_reads(competition, monkeypatch):
    raw = (competition / "training.csv").read_bytes()
    images, keypoints = data.parse_training(raw)
    monkeypatch.setattr(data, "_scan_pixels", data._scan_pixels_numpy)
    again, again_keypoints = data.parse_training(raw)
    assert images.std() > 10 and np.array_equal(images, again)
    assert np.array_equal(np.nan_to_num(keypoints, nan=-1), np.nan_to_num(again_keypoints, nan=-1))


def test_a_broken_numba_falls_back_to_numpy_with_one_warning_line(competition, tmp_path):
    """A numba built for another numpy stops at import (as on a Kaggle image in 2026): parse anyway."""
    fake = tmp_path / "fake" / "numba"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise ImportError("Numba needs NumPy 2.0 or less. Got NumPy 2.1.")\n')
    folder = tmp_path / "data"
    shutil.copytree(competition, folder, ignore=shutil.ignore_patterns(".fkd-cache"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(fake.parent), str(REPO)]))
    result = subprocess.run([sys.executable, "-c", "import sys; from fkd.data import competition as data; "
                             "images, _ = data.load_training(sys.argv[1]); print(images.shape, images.sum())",
                             str(folder)], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    expected, _ = data.parse_training((competition / "training.csv").read_bytes())
    assert result.stdout.split()[-1] == str(expected.sum())
    warning = [line for line in result.stderr.splitlines() if "numba" in line]
    assert len(warning) == 1 and "Numba needs NumPy 2.0" in warning[0] and "numpy instead" in warning[0]


def test_missing_keypoints_are_nan_and_crlf_is_accepted():
    raw = _training(_row(keypoints=",".join([""] * 4 + ["40.5"] * 26))).replace(b"\n", b"\r\n")
    images, keypoints = data.parse_training(raw)
    assert np.isnan(keypoints[0, :4]).all() and (keypoints[0, 4:] == 40.5).all()
    assert (images == 7).all()


def test_labels_a_little_past_the_border_are_kept_and_further_refused(competition):
    edge = [data.LABEL_LOW, data.LABEL_HIGH, -0.7, 95.8, 0.0, 95.0] * 5
    _, keypoints = data.parse_training(_training(_row(keypoints=",".join(f"{v:g}" for v in edge))))
    np.testing.assert_array_equal(keypoints[0], np.float32(edge))
    for beyond in (data.LABEL_LOW - 0.01, data.LABEL_HIGH + 0.01):
        with pytest.raises(FkdError, match="is outside the image"):
            data.parse_training(_training(_row(keypoints=",".join([f"{beyond:g}"] + ["40.5"] * 29))))
    assert data.LABEL_MARGIN >= 3  # Kaggle's labels touch the border; a margin of a few pixels keeps them
    _, synthetic = data.load_training(competition)  # the generator every test uses stays inside the frame
    assert np.nanmin(synthetic) >= 0 and np.nanmax(synthetic) <= 95


def test_bad_test_file():
    raw = b"ImageId,Image\n1," + GOOD_IMAGE.encode() + b"\nx," + GOOD_IMAGE.encode() + b"\n"
    with pytest.raises(FkdError, match=r"test.csv, row 2 \(line 3\), column ImageId: empty|'x'"):
        data.parse_test(raw, "test.csv")
    with pytest.raises(FkdError, match=r"missing ImageId"):
        data.parse_test(b"Id,Image\n1," + GOOD_IMAGE.encode() + b"\n", "test.csv")


def _test_file(*ids):
    return b"ImageId,Image\n" + b"".join(b"%s,%s\n" % (i.encode(), GOOD_IMAGE.encode()) for i in ids)


@pytest.mark.parametrize("ids, match", [
    (("1", "2", "1"),
     r"^test.csv, row 3 \(line 4\), column ImageId: ImageId 1 is used twice \(first in row 1 \(line 2\)\)$"),
    (("1", "2.5"), r"^test.csv, row 2 \(line 3\), column ImageId: 2.5 is not an integer$"),
    (("1e20", "1"), r"^test.csv, row 1 \(line 2\), column ImageId: 1e\+20 is not an integer$"),
])
def test_test_ids_are_distinct_integers(ids, match):
    with pytest.raises(FkdError, match=match):
        data.parse_test(_test_file(*ids), "test.csv")
    assert list(data.parse_test(_test_file("3", "1", "2"))[0]) == [3, 1, 2]


LOOKUP = b"RowId,ImageId,FeatureName,Location\n"


@pytest.mark.parametrize("raw, match", [
    (LOOKUP + b"1,1,nose_tip_x,\n1,2,nose_tip_y,\n",
     r"row 2 \(line 3\), column RowId: RowId 1 is used twice \(first in row 1 \(line 2\)\)$"),
    (LOOKUP + b"1,1,nose_tip_x,\n2.5,1,nose_tip_y,\n", r"row 2 \(line 3\), column RowId: '2.5' is not an integer$"),
    (LOOKUP + b"1,,nose_tip_x,\n", r"row 1 \(line 2\), column ImageId: '' is not an integer$"),
    (LOOKUP + b"1,1,nose_\xff,\n", r"is not a readable csv"),
    (LOOKUP, r"no data rows"),
    (b"", r"is not a readable csv"),
])
def test_bad_lookup_gets_one_clear_error(raw, match, tmp_path):
    path = tmp_path / "IdLookupTable.csv"
    path.write_bytes(raw)
    with pytest.raises(FkdError, match=match) as error:
        data.load_lookup(path)
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)


def test_cli_prints_one_line_and_exits_nonzero(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "training.csv").write_bytes(_training(_row(image=_image_with(100, "300"))))
    (folder / "test.csv").write_text("ImageId,Image\n")
    (folder / "IdLookupTable.csv").write_text("RowId,ImageId,FeatureName,Location\n1,1,nose_tip_x,\n")
    result = subprocess.run([sys.executable, "-m", "fkd", "submit", "--data-dir", str(folder), "--model", "mean",
                             "--out-dir", str(tmp_path / "subs")], capture_output=True, text=True)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "training.csv, row 1 (line 2), column Image: pixel 100: a value above 255" in lines[0]
    assert not (tmp_path / "subs").exists() or not list((tmp_path / "subs").iterdir())


def test_folder_without_write_bits_is_left_untouched_even_for_root(competition, tmp_path, monkeypatch):
    folder = tmp_path / "shared"
    shutil.copytree(competition, folder, ignore=shutil.ignore_patterns(".fkd-cache"))
    monkeypatch.setenv("FKD_CACHE_DIR", str(tmp_path / "cache"))
    folder.chmod(0o555)
    try:
        data.load_training(folder)
        assert not (folder / ".fkd-cache").exists()
        assert list((tmp_path / "cache").glob("shared-*/training.images.npy"))
    finally:
        folder.chmod(0o755)


def _kaggle_like_training():
    """Complete rows and rows with only Kaggle's 4 core points, as Kaggle's training.csv has."""
    from fkd.core.keypoints import CORE_COLUMN_INDEX

    keypoints = np.full((10, 30), 40.0, np.float32)
    keypoints[4:] = np.nan
    keypoints[4:, CORE_COLUMN_INDEX] = 40.0
    keypoints[9, :12] = 40.0  # one partial row with more points changes nothing
    return keypoints


def test_kinds_of_kaggles_test_images_follow_the_points_asked(kaggle_lookup):
    lookup = data.load_lookup(kaggle_lookup)
    ids = np.arange(1, 1784)
    kinds = data.lookup_kinds(lookup, ids, _kaggle_like_training())
    asked = lookup.groupby("ImageId").size().reindex(ids).to_numpy()
    assert ((asked == 30) <= (kinds == 1)).all() and ((asked == 8) <= (kinds == 0)).all()
    other = (asked != 30) & (asked != 8)
    assert other.sum() == 37
    # of the 37 images asked 6 to 28 values, only those asked core values alone are of the partial kind
    core = set(np.asarray(COLUMNS)[data.partial_columns(_kaggle_like_training())])
    only_core = lookup.groupby("ImageId")["FeatureName"].agg(lambda f: set(f) <= core).reindex(ids).to_numpy()
    assert np.array_equal(kinds == 0, only_core)
    assert (kinds[other] == 1).sum() == 35 and (kinds[other] == 0).sum() == 2


def test_kinds_of_the_proxys_test_images(tmp_path):
    proxy = Path(__file__).resolve().parents[2] / "shared" / "data" / "proxy"
    if not (proxy / "training.zip").is_file():
        pytest.skip(f"{proxy} is absent: the proxy folder lives in ../shared, beside the repository")
    _, keypoints = data.load_training(proxy)
    ids, _ = data.load_test(proxy)
    lookup = data.load_lookup(proxy)
    kinds = data.lookup_kinds(lookup, ids, keypoints)
    # the folder's own lookup says which image is which kind: all 30 values asked, or the partial rows' 10
    asked = lookup.groupby("ImageId").size().reindex(ids).to_numpy()
    assert set(asked) == {30, 10}
    np.testing.assert_array_equal(kinds, (asked == 30).astype(np.int64))
    # and, as its README says, the complete kind comes first
    n_complete = int((asked == 30).sum())
    assert (kinds[ids <= n_complete] == 1).all() and (kinds[ids > n_complete] == 0).all()
    assert data.partial_columns(keypoints).sum() == 10
