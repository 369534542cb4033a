import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("MPLBACKEND", "Agg")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two pytest processes on this project's 2 cores: one thread each (and in their
    # children), else the two oversubscribe the cores and each trains several times slower
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def competition(tmp_path_factory) -> Path:
    """A small synthetic competition folder (training/test csv, lookup, sample submission)."""
    from fkd.data.synth import write_competition

    return write_competition(tmp_path_factory.mktemp("competition"), n_train=240, n_test=24, seed=0)


@pytest.fixture
def kaggle_lookup() -> Path:
    """The real competition's IdLookupTable.csv (in ../shared, which a user's clone lacks)."""
    path = SHARED_DATA / "kaggle" / "IdLookupTable.csv"
    if not path.is_file():
        pytest.skip(f"{path} is absent: the real lookup table lives in ../shared, beside the repository")
    return path
