"""`fkd kaggle download`: the competition files into data/, unzipped and verified."""
import zipfile
from pathlib import Path

from fkd.core.errors import FkdError
from fkd.kaggle.program import call, require_kaggle

COMPETITION_FILES = ("training", "test")          # .zip or .csv
PLAIN_FILES = ("IdLookupTable.csv", "SampleSubmission.csv")


def _safe_extract(archive: zipfile.ZipFile, out: Path) -> list:
    names = []
    root = out.resolve()
    for member in archive.infolist():
        target = (out / member.filename).resolve()
        if root != target and root not in target.parents:
            raise FkdError(f"refusing to extract {member.filename!r}: outside {out}")
        names.append(member.filename)
    archive.extractall(out)
    return names


def verify_competition(out: Path) -> list:
    """The competition files present in `out`; FkdError naming the first one missing or unreadable."""
    present = []
    for stem in COMPETITION_FILES:
        candidates = [out / f"{stem}.zip", out / f"{stem}.csv"]
        found = [p for p in candidates if p.is_file()]
        if not found:
            raise FkdError(f"missing {stem}.zip (or {stem}.csv) after the download", path=out)
        if found[0].suffix == ".zip":
            try:
                with zipfile.ZipFile(found[0]) as archive:
                    bad = archive.testzip()
                    if bad or not any(n.endswith(".csv") for n in archive.namelist()):
                        raise FkdError(f"damaged or empty archive ({bad or 'no .csv inside'})", path=found[0])
            except zipfile.BadZipFile:
                raise FkdError("not a readable zip", path=found[0]) from None
        present.append(found[0].name)
    for name in PLAIN_FILES:
        if not (out / name).is_file():
            raise FkdError(f"missing {name} after the download", path=out)
        present.append(name)
    return present


def cmd_download(args):
    out = Path(args.out)
    if not args.force:
        try:
            files = verify_competition(out)
            print(f"{out}: already holds {', '.join(files)} (--force downloads again)")
            return 0
        except FkdError:
            pass
    program = require_kaggle()
    out.mkdir(parents=True, exist_ok=True)
    call(["competitions", "download", args.competition, "-p", out] + (["-o"] if args.force else []), program)
    archive_path = out / f"{args.competition}.zip"
    if archive_path.is_file():
        try:
            with zipfile.ZipFile(archive_path) as archive:
                names = _safe_extract(archive, out)
        except zipfile.BadZipFile:
            raise FkdError("the download is not a readable zip", path=archive_path) from None
        print(f"unzipped {archive_path}: {', '.join(names)}")
        archive_path.unlink()
    files = verify_competition(out)
    print(f"{out}: {', '.join(files)}")
    return 0
