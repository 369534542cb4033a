"""A stand-in for Kaggle's Python image here: a virtual environment with requirements-kaggle.txt's versions.

Built once per version list and Python, then reused, under ~/.cache/fkd/ ($FKD_KAGGLE_ENV_ROOT overrides).
torch and torchvision stay this project's own: a .pth file puts the running interpreter's site-packages
after the environment's own, so every pinned package resolves to Kaggle's version and only what the
environment lacks (torch, torchvision and what they need) comes from the project's.

    python -m fkd.kaggle.env      # build if needed; prints the environment's python
"""
import hashlib
import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parents[2] / "requirements-kaggle.txt"
FROM_THE_PROJECT = ("torch", "torchvision")  # Kaggle's CUDA 12.8 builds of these cannot install beside ours
PTH_NAME = "fkd-project-site-packages.pth"


def pinned(requirements=REQUIREMENTS) -> dict:
    """{distribution name (lower case): version} of the file's name==version lines."""
    pins = {}
    for line in Path(requirements).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def installed_here(requirements=REQUIREMENTS) -> dict:
    """The pins the environment installs itself (all but FROM_THE_PROJECT)."""
    return {name: version for name, version in pinned(requirements).items() if name not in FROM_THE_PROJECT}


def env_dir(requirements=REQUIREMENTS) -> Path:
    # the account's home, not $HOME: tests run with an empty HOME and must still find the built copy
    home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    root = Path(os.environ.get("FKD_KAGGLE_ENV_ROOT") or home / ".cache" / "fkd")
    pins = " ".join(f"{n}=={v}" for n, v in sorted(installed_here(requirements).items()))
    key = hashlib.blake2b(f"{sys.version_info[:2]} {pins}".encode(), digest_size=6).hexdigest()
    return root / f"kaggle-env-py{sys.version_info[0]}{sys.version_info[1]}-{key}"


def _env_site_packages(folder: Path) -> Path:
    return folder / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"


def _link_project_packages(folder: Path) -> None:
    (_env_site_packages(folder) / PTH_NAME).write_text(sysconfig.get_paths()["purelib"] + "\n")


def ensure(requirements=REQUIREMENTS, log=print) -> Path:
    """The python of the environment, built first if it is not there yet (a minute or two, once)."""
    folder = env_dir(requirements)
    python = folder / "bin" / "python"
    if (folder / ".complete").is_file():
        _link_project_packages(folder)
        return python
    building = folder.with_name(folder.name + f".building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    log(f"building the Kaggle-version environment in {folder} (once)")
    subprocess.run([sys.executable, "-m", "venv", str(building)], check=True)
    # the project's site-packages are visible while pip resolves, so torch is found, not downloaded
    _link_project_packages(building)
    pins = [f"{name}=={version}" for name, version in installed_here(requirements).items()]
    pip = [str(building / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    # first the pinned packages themselves into the environment, even where the project has the same
    # version; then what they need and nothing here provides
    subprocess.run(pip + ["--no-deps", "--ignore-installed", *pins], check=True)
    subprocess.run(pip + pins, check=True)
    (building / ".complete").write_text(" ".join(pins) + "\n")
    if folder.exists():  # another process finished first: keep its copy
        shutil.rmtree(building, ignore_errors=True)
    else:
        building.rename(folder)
    # a venv records its own path in its scripts: the renamed one is run as `<folder>/bin/python -m ...`
    _link_project_packages(folder)
    return python


if __name__ == "__main__":
    print(ensure(log=lambda message: print(message, file=sys.stderr)))
