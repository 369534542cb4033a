"""Competition files in: training/test as .csv or Kaggle's .zip, validated strictly, cached as .npy.

Pixels are parsed by one compiled pass over the file's bytes (numba); the keypoint columns by pandas. The cache
is used only while its stamp names the source file's content (SHA-256) and the arrays' shapes, dtypes and content:
a changed source, or a damaged, truncated or replaced cache file, is parsed again. Where numba cannot be imported
(a numba built for another numpy stops at import, as on one Kaggle image in 2026), a numpy parser with the same
checks takes over, after a one-line warning. numba is imported, and the parser compiled (or loaded from numba's
cache), only when a file is parsed: a command that reads the .npy cache never pays for it.
"""
import functools
import hashlib
import io
import json
import os
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from fkd.core.atomic import atomic_path, write_text
from fkd.core.errors import FkdError, row_label
from fkd.core.keypoints import COLUMNS, SIZE, partial_columns


N_PIXELS = SIZE * SIZE
TRAINING_HEADER = COLUMNS + ["Image"]
TEST_HEADER = ["ImageId", "Image"]
LOOKUP_HEADER = ["RowId", "ImageId", "FeatureName", "Location"]
DEFAULT_SEARCH_ROOT = "/kaggle/input"
SCAN_BLOCK_ROWS = 500  # rows of pixels a thread scans at least
# How far past the frame's edge pixels (0 and 95) a training label may lie. Kaggle's labels touch the
# border (a few lie just past 95) and the proxy's real faces span 1.2 .. 94.4; 5 px accepts every real
# label and refuses values that are no place on the face (1e9, -40), which would wreck a whole run.
LABEL_MARGIN = 5.0
LABEL_LOW, LABEL_HIGH = -LABEL_MARGIN, SIZE - 1 + LABEL_MARGIN
HASH_BLOCK = 1 << 20  # bytes read at a time while hashing a source file
# The most a .csv inside a .zip may unpack to. Kaggle's training.csv is ~230 MB unzipped (test.csv ~60 MB);
# a member that says it is larger (a zip bomb: 2 GB of '0' compresses to ~2 MB) is refused before any of it
# is read. (zipfile returns no more than the size a member declares; one that understates it fails its CRC check.)
MAX_ZIP_MEMBER_BYTES = 1 << 30  # 1 GiB


# ---------------------------------------------------------------- finding the competition folder

def _has_training(folder: Path) -> bool:
    return (folder / "training.csv").is_file() or (folder / "training.zip").is_file()


def find_data_dir(data_dir=None, search_root=None) -> Path:
    """`data_dir` if given, else ./data, else the first folder under the search root holding training data.

    The search root is `search_root`, else $FKD_KAGGLE_INPUT, else /kaggle/input: Kaggle has mounted
    competitions at /kaggle/input/<slug>/ and /kaggle/input/competitions/<slug>/ over the years.
    """
    if data_dir is not None:
        folder = Path(data_dir)
        if not folder.is_dir():
            raise FkdError("no such folder", path=folder)
        if not _has_training(folder):
            raise FkdError("holds neither training.csv nor training.zip", path=folder)
        return folder
    if _has_training(Path("data")):
        return Path("data")
    root = Path(search_root or os.environ.get("FKD_KAGGLE_INPUT") or DEFAULT_SEARCH_ROOT)
    if root.is_dir():
        found = sorted(p.parent for p in root.rglob("training.*") if p.name in ("training.csv", "training.zip"))
        if found:
            return found[0]
    raise FkdError(
        f"no competition data: pass --data-dir, run `make data`, or put training.csv/.zip under {root}"
    )


def source_file(data_dir: Path, stem: str) -> Path:
    for suffix in (".csv", ".zip"):
        path = Path(data_dir) / f"{stem}{suffix}"
        if path.is_file():
            return path
    raise FkdError(f"missing {stem}.csv or {stem}.zip", path=data_dir)


def read_bytes(path: Path) -> bytes:
    """The bytes of a .csv, or of the single .csv inside a Kaggle .zip."""
    path = Path(path)
    if path.suffix != ".zip":
        return path.read_bytes()
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.namelist() if m.endswith(".csv") and not m.startswith("__MACOSX")]
            if len(members) != 1:
                raise FkdError(f"expected one .csv inside, found {members or 'none'}", path=path)
            size = archive.getinfo(members[0]).file_size
            if size > MAX_ZIP_MEMBER_BYTES:
                raise FkdError(f"{members[0]} inside would unpack to {size:,} bytes, more than the "
                               f"{MAX_ZIP_MEMBER_BYTES:,} a competition file can be (Kaggle's training.csv is "
                               "~230 MB): a damaged or hostile zip? Download it again (`make data`)", path=path)
            return archive.read(members[0])
    except zipfile.BadZipFile as error:
        raise FkdError(f"not a readable zip ({error})", path=path) from None


# ---------------------------------------------------------------- parsing

def _check_header(found, expected, path):
    if found == expected:
        return
    missing = [c for c in expected if c not in found]
    unexpected = [c for c in found if c not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected)}")
        raise FkdError("bad header: " + "; ".join(parts), path=path, row="header")
    raise FkdError(f"columns out of order: expected {', '.join(expected)}", path=path, row="header")


# problems _scan_pixels reports, by code
_PIXEL_PROBLEMS = {
    1: "a character that is not a digit or a space",
    2: "an empty value (two spaces in a row, or a leading/trailing space)",
    3: "a value above 255",
    4: "fewer than 9216 values",
    5: "more than 9216 values",
}


def _scan_rows(buffer, starts, ends, out, problems):
    # Hand-written because no library parses 65M small space-separated integers fast enough:
    # pandas, pyarrow split+cast and np.fromstring all take 3-10x longer (see `make bench`).
    n_values = out.shape[1]
    for row in range(starts.shape[0]):
        count = 0
        value = 0
        digits = 0
        for position in range(starts[row], ends[row] + 1):
            char = buffer[position] if position < ends[row] else 32
            if 48 <= char <= 57:
                value = value * 10 + (char - 48)
                digits += 1
                if value > 255:
                    problems[row, 0] = 3
                    problems[row, 1] = count
                    break
            elif char == 32:
                if digits == 0:
                    problems[row, 0] = 2
                    problems[row, 1] = count
                    break
                if count == n_values:
                    problems[row, 0] = 5
                    problems[row, 1] = count
                    break
                out[row, count] = value
                count += 1
                value = 0
                digits = 0
            else:
                problems[row, 0] = 1
                problems[row, 1] = count
                break
        if problems[row, 0] == 0 and count != n_values:
            problems[row, 0] = 4
            problems[row, 1] = count


def _scan_one_row(line, out, problems):
    # int64 characters: uint8 ones would wrap around in plain Python arithmetic (256 -> 0)
    _scan_rows(line.astype(np.int64), np.zeros(1, np.int64), np.array([len(line)]), out, problems)


def _scan_pixels_numpy(buffer, starts, ends, out, problems):
    """What _scan_rows does, without numba: rows of at most 3-digit values in numpy, any other row
    (the rare bad one) through _scan_rows itself, so both give the same values and the same problems."""
    n_values = out.shape[1]
    for row in range(len(starts)):
        line = buffer[starts[row]:ends[row]]
        if len(line) == 0:
            _scan_one_row(line, out[row:row + 1], problems[row:row + 1])
            continue
        space = line == 32
        token = np.cumsum(space)
        digit_at = np.flatnonzero(~space)
        lengths = np.bincount(token[digit_at], minlength=n_values) if len(digit_at) else np.zeros(0, np.int64)
        if (len(lengths) != n_values or token[-1] != n_values - 1 or lengths.min() < 1 or lengths.max() > 3
                or ((line[digit_at] < 48) | (line[digit_at] > 57)).any()):
            _scan_one_row(line, out[row:row + 1], problems[row:row + 1])
            continue
        token_end = np.flatnonzero(np.append(space, True))  # the space (or line end) after each value
        power = token_end[token[digit_at]] - digit_at - 1
        values = np.bincount(token[digit_at], weights=(line[digit_at] - 48) * 10.0 ** power, minlength=n_values)
        if values.max() > 255:
            _scan_one_row(line, out[row:row + 1], problems[row:row + 1])
            continue
        out[row] = values


@functools.cache
def _pixel_scanner():
    """_scan_rows compiled by numba (cached on disk after the first time), or the numpy parser where
    numba cannot be imported, after a one-line warning."""
    try:
        import numba  # seconds to import: only a file being parsed pays for it
    except Exception as error:  # noqa: BLE001 - a mismatched numba raises ImportError, AttributeError or SystemError
        first_line = str(error).splitlines()[0] if str(error) else ""
        sys.stderr.write(f"fkd: numba unavailable ({type(error).__name__}: {first_line}); "
                         "pixels are parsed with numpy instead (slower)\n")
        return _scan_pixels_numpy
    return numba.njit(nogil=True, cache=True)(_scan_rows)


def _scan_pixels(buffer, starts, ends, out, problems):
    """The rows in one block per core, each in a thread: the numba scanner releases the GIL (nogil)."""
    scan = _pixel_scanner()
    bounds = np.linspace(0, len(starts), min(os.cpu_count() or 1, 1 + len(starts) // SCAN_BLOCK_ROWS) + 1).astype(int)
    blocks = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    with ThreadPoolExecutor(len(blocks)) as pool:
        list(pool.map(lambda rows: scan(buffer, starts[rows], ends[rows], out[rows], problems[rows]), blocks))


def _parse_images(buffer, starts, ends, path) -> np.ndarray:
    """Each line's [start, end) holds 9,216 space-separated integers 0..255 (optionally quoted)."""
    quoted = (buffer[starts] == ord('"')) & (buffer[np.maximum(ends - 1, starts)] == ord('"')) & (ends - starts >= 2)
    starts = starts + quoted
    ends = ends - quoted
    images = np.empty((len(starts), N_PIXELS), dtype=np.uint8)
    problems = np.zeros((len(starts), 2), dtype=np.int64)
    _scan_pixels(buffer, starts, ends, images, problems)
    bad_rows = np.flatnonzero(problems[:, 0])
    if len(bad_rows):
        row = int(bad_rows[0])
        code, pixel = problems[row]
        where = f"pixel {pixel}: " if code in (1, 2, 3) else f"{pixel} values read: "
        raise FkdError(where + _PIXEL_PROBLEMS[int(code)] + " (pixels are 9216 integers 0..255)",
                       path=path, row=row_label(row), column="Image")
    return images.reshape(-1, SIZE, SIZE)


def _split_lines(raw: bytes):
    """Header fields, and for each data line: its start, the start of its last field, its end and
    its number of fields.

    bytes.find/rfind (C memchr) locate the line ends and last commas without scanning every byte in Python.
    """
    header_end = raw.find(b"\n")
    if header_end < 0:
        header_end = len(raw)
    header = raw[:header_end].decode("utf-8-sig", errors="replace").rstrip("\r").split(",")
    header = [name.strip().strip('"') for name in header]
    starts, last_fields, ends, n_fields = [], [], [], []
    position = header_end + 1
    while position < len(raw):
        end = raw.find(b"\n", position)
        if end < 0:
            end = len(raw)
        stop = end - 1 if end > position and raw[end - 1] == 13 else end  # \r\n
        if stop > position:  # skip blank lines
            comma = raw.rfind(b",", position, stop)
            n_fields.append(raw.count(b",", position, comma + 1) + 1 if comma >= 0 else 1)
            starts.append(position)
            last_fields.append(comma + 1)
            ends.append(stop)
        position = end + 1
    as_array = lambda values: np.array(values, dtype=np.int64)
    return header, as_array(starts), as_array(last_fields), as_array(ends), as_array(n_fields)


def _parse_numbers(raw, starts, ends, columns, path, dtype, allow_empty):
    """The leading comma-separated numeric fields of each line, via pandas on just those bytes: its C
    parser first (a tenth of the time), and where that fails or reads a value that is not finite,
    cell by cell, to name the bad one."""
    text = b"\n".join(raw[s:e] for s, e in zip(starts, ends))
    try:
        table = pd.read_csv(io.BytesIO(text), header=None, names=columns, dtype=np.float64,
                            keep_default_na=False, na_values=[""])
        values = table.to_numpy(dtype=np.float64)
        missing = np.isnan(values)
        if len(values) == len(starts) and np.isfinite(values[~missing]).all() and (allow_empty or not missing.any()):
            return values.astype(dtype)
    except (ValueError, pd.errors.ParserError):
        pass
    return _parse_numbers_cell_by_cell(text, columns, path, dtype, allow_empty)


def _parse_numbers_cell_by_cell(text, columns, path, dtype, allow_empty):
    # latin-1 reads any bytes, so a cell that is not UTF-8 is named like any other bad cell
    table = pd.read_csv(io.BytesIO(text), header=None, names=columns, dtype=str, encoding="latin-1",
                        keep_default_na=False, na_filter=False)
    values = np.empty((len(table), len(columns)), dtype=np.float64)
    for j, column in enumerate(columns):
        cells = table[column].str.strip()
        numbers = pd.to_numeric(cells.where(cells != ""), errors="coerce")
        bad = (cells != "") & (numbers.isna() | ~np.isfinite(numbers.fillna(0.0)))
        if not allow_empty:
            bad |= cells == ""
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            shown = cells.iloc[row]
            why = "empty" if shown == "" else f"{shown!r} is not a finite number"
            raise FkdError(why, path=path, row=row_label(row), column=column)
        values[:, j] = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    return values.astype(dtype)


def _split_rows(raw: bytes, header_expected, path):
    """(starts, last field starts, ends) of the data lines, once the header and every line's field count are right."""
    header, starts, last_fields, ends, n_fields = _split_lines(raw)
    _check_header(header, header_expected, path)
    if len(starts) == 0:
        raise FkdError("no data rows", path=path)
    wrong = np.flatnonzero(n_fields != len(header_expected))
    if len(wrong):
        row = int(wrong[0])
        raise FkdError(f"{n_fields[row]} fields, expected {len(header_expected)}", path=path, row=row_label(row))
    return starts, last_fields, ends


def _parse_table(raw: bytes, header_expected, path):
    starts, last_fields, ends = _split_rows(raw, header_expected, path)
    images = _parse_images(np.frombuffer(raw, dtype=np.uint8), last_fields, ends, path)
    return starts, last_fields, images


def parse_number_table(raw: bytes, header, path) -> np.ndarray:
    """float64 [N, len(header)] from a csv of numbers only (answers.csv): every cell a finite number."""
    starts, _, ends = _split_rows(raw, header, path)
    return _parse_numbers(raw, starts, ends, header, path, np.float64, allow_empty=False)


def _check_label_range(keypoints, path):
    outside = (keypoints < LABEL_LOW) | (keypoints > LABEL_HIGH)  # NaN (missing) is never outside
    if outside.any():
        row, column = np.argwhere(outside)[0]
        raise FkdError(f"{keypoints[row, column]:g} is outside the image (labels lie in "
                       f"[{LABEL_LOW:g}, {LABEL_HIGH:g}] px)", path=path, row=row_label(row), column=COLUMNS[column])


def _integers(numbers, path, column, cells=None) -> np.ndarray:
    """int64 of parsed ids (NaN where a cell is no number); FkdError naming the first that is no
    integer (`cells`: the file's text, to show it)."""
    whole = np.isfinite(numbers) & (numbers == np.round(numbers)) & (np.abs(numbers) < 2 ** 53)
    if not whole.all():
        row = int(np.flatnonzero(~whole)[0])
        shown = repr(cells[row]) if cells is not None else f"{numbers[row]:g}"
        raise FkdError(f"{shown} is not an integer", path=path, row=row_label(row), column=column)
    return numbers.astype(np.int64)


def _check_unique(ids, path, column):
    repeated = pd.Series(ids).duplicated().to_numpy()
    if repeated.any():
        row = int(np.flatnonzero(repeated)[0])
        first = int(np.flatnonzero(ids == ids[row])[0])
        raise FkdError(f"{column} {ids[row]} is used twice (first in row {row_label(first)})",
                       path=path, row=row_label(row), column=column)


def parse_training(raw: bytes, path="training.csv"):
    """(images uint8 [N,96,96], keypoints float32 [N,30] with NaN for missing) from training.csv bytes."""
    starts, last_fields, images = _parse_table(raw, TRAINING_HEADER, path)
    keypoints = _parse_numbers(raw, starts, last_fields - 1, COLUMNS, path, np.float32, allow_empty=True)
    _check_label_range(keypoints, path)
    return images, keypoints


def parse_test(raw: bytes, path="test.csv"):
    """(image_ids int64 [M], distinct, images uint8 [M,96,96]) from test.csv bytes."""
    starts, last_fields, images = _parse_table(raw, TEST_HEADER, path)
    numbers = _parse_numbers(raw, starts, last_fields - 1, ["ImageId"], path, np.float64, allow_empty=False)[:, 0]
    ids = _integers(numbers, path, "ImageId")
    _check_unique(ids, path, "ImageId")
    return ids, images


# ---------------------------------------------------------------- cache

def cache_dir(data_dir) -> Path:
    """<data_dir>/.fkd-cache where writable, else ~/.cache/fkd/<hash of the folder> (read-only inputs)."""
    data_dir = Path(data_dir).resolve()
    # root passes os.access on a folder without write bits: respect the bits too
    if os.access(data_dir, os.W_OK) and data_dir.stat().st_mode & 0o200:
        folder = data_dir / ".fkd-cache"
    else:
        digest = hashlib.sha1(str(data_dir).encode()).hexdigest()[:12]
        base = Path(os.environ.get("FKD_CACHE_DIR") or Path.home() / ".cache" / "fkd")
        folder = base / f"{data_dir.name}-{digest}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _describe(array) -> dict:
    return {"shape": list(array.shape), "dtype": str(array.dtype),
            "sha256": hashlib.sha256(np.ascontiguousarray(array)).hexdigest()}


def _stamp(source_sha256: str, arrays) -> dict:
    return {"source_sha256": source_sha256, "arrays": [_describe(array) for array in arrays]}


def _read_cache(stamp_path: Path, files, source_sha256: str):
    """The cached arrays, or why they cannot be used: no cache, a changed source, or files that are damaged
    or disagree with the stamp (a cache may come from someone else: only what the stamp describes is used)."""
    if not stamp_path.is_file():
        return None, None
    try:
        stamp = json.loads(stamp_path.read_text())
        if not isinstance(stamp, dict) or stamp.get("source_sha256") != source_sha256:
            return None, "its stamp names other source bytes"
        # memory-mapped first: a header that claims more data than the file holds fails here, allocating nothing
        arrays = tuple(np.array(np.load(f, mmap_mode="r", allow_pickle=False)) for f in files)
    except (OSError, ValueError, EOFError) as error:
        return None, f"a file is damaged or not a plain array ({type(error).__name__})"
    if _stamp(source_sha256, arrays) != stamp:
        return None, "its arrays differ from its stamp"
    return arrays, None


def _cached(data_dir, stem: str, parse, names):
    """Arrays parsed from <stem>.csv/.zip, reloaded from .npy while the cache matches the source's bytes."""
    source = source_file(data_dir, stem)
    folder = cache_dir(data_dir)
    stamp_path = folder / f"{stem}.json"
    files = [folder / f"{stem}.{name}.npy" for name in names]
    source_sha256 = _file_sha256(source)
    arrays, problem = _read_cache(stamp_path, files, source_sha256)
    if arrays is not None:
        return arrays
    if problem:
        sys.stderr.write(f"fkd: {stamp_path.parent}: cache of {source.name} not used: {problem}; parsing it again\n")
    arrays = parse(read_bytes(source), source)
    for array, file in zip(arrays, files):
        with atomic_path(file) as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, array)
    write_text(stamp_path, json.dumps(_stamp(source_sha256, arrays)))  # last: the cache counts only once this exists
    return arrays


def load_training(data_dir):
    """(images uint8 [N,96,96], keypoints float32 [N,30], NaN = missing)."""
    return _cached(data_dir, "training", parse_training, ("images", "keypoints"))


def load_test(data_dir):
    """(image_ids int64 [M], images uint8 [M,96,96])."""
    return _cached(data_dir, "test", parse_test, ("ids", "images"))


def load_lookup(source) -> pd.DataFrame:
    """IdLookupTable as RowId, ImageId, FeatureName; `source` is the csv or the folder holding it."""
    path = Path(source)
    if path.is_dir():
        path = path / "IdLookupTable.csv"
    if not path.is_file():
        raise FkdError("no such file", path=path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise FkdError(f"is not a readable csv ({str(error).splitlines()[0]})", path=path) from None
    _check_header(list(table.columns), LOOKUP_HEADER, path)
    if table.empty:
        raise FkdError("no data rows", path=path)
    for column in ("RowId", "ImageId"):
        cells = table[column].str.strip()
        table[column] = _integers(pd.to_numeric(cells.where(cells != ""), errors="coerce").to_numpy(np.float64),
                                  path, column, cells.to_numpy())
    _check_unique(table["RowId"].to_numpy(), path, "RowId")
    unknown = ~table["FeatureName"].isin(COLUMNS)
    if unknown.any():
        row = int(np.flatnonzero(unknown.to_numpy())[0])
        raise FkdError(f"unknown feature {table['FeatureName'].iloc[row]!r}", path=path,
                       row=row_label(row), column="FeatureName")
    return table[["RowId", "ImageId", "FeatureName"]]


def lookup_kinds(lookup: pd.DataFrame, image_ids, training_keypoints) -> np.ndarray:
    """Per test image: 0 (the partial kind) when the lookup asks only values the partial training rows
    label, else 1 (the complete kind: it asks a point only the complete rows teach). An image the
    lookup does not mention is of the complete kind. Each kind is predicted with its own rows' output."""
    labelled = set(np.asarray(COLUMNS)[partial_columns(training_keypoints)])
    outside = ~lookup["FeatureName"].isin(labelled)
    asks_more = outside.groupby(lookup["ImageId"]).any()
    return asks_more.reindex(image_ids).fillna(True).to_numpy().astype(np.int64)


def training_fingerprint(images, keypoints) -> str:
    """A short hash of the training data (pixels and labels): the same folder gives the same digest."""
    return hashlib.blake2b(np.ascontiguousarray(images).tobytes()
                           + np.nan_to_num(keypoints, nan=-1).astype(np.float32).tobytes(), digest_size=8).hexdigest()
