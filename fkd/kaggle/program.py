"""The `kaggle` program (kaggle==2.2.5, run as a subprocess) and the token it reads: found, checked,
and never printed (its output is relayed with any token value masked)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from fkd.core.errors import FkdError

COMPETITION = "facial-keypoints-detection"
RULES_URL = f"https://www.kaggle.com/competitions/{COMPETITION}/rules"
TOKEN_HELP = ("no Kaggle token: run `kaggle auth login`, or create an API token at "
              "https://www.kaggle.com/settings/api and save it to ~/.kaggle/access_token "
              "(or export KAGGLE_API_TOKEN), or put a legacy kaggle.json in ~/.kaggle/ "
              "(or $KAGGLE_CONFIG_DIR) with chmod 600")


PROGRAM_HELP = ("the `kaggle` program was not found on PATH: `make install` (pip install kaggle==2.2.5 six) "
                "and run through .venv/bin/python, or activate .venv")


VENV_BIN = Path(sys.executable).parent          # .venv/bin when run as .venv/bin/python -m fkd


def find_program():
    """$FKD_KAGGLE_PROGRAM, else `kaggle` on PATH, else beside this Python (a venv run without activation)."""
    explicit = os.environ.get("FKD_KAGGLE_PROGRAM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    found = shutil.which("kaggle")
    if found:
        return found
    beside = VENV_BIN / "kaggle"
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def _home() -> Path:
    return Path(os.path.expanduser("~"))


def _config_dir() -> Path:
    """Where kaggle 2.2.5 looks for kaggle.json (KaggleApi.config_dir)."""
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        return Path(os.environ["KAGGLE_CONFIG_DIR"])
    legacy = _home() / ".kaggle"
    if sys.platform.startswith("linux") and not legacy.exists():
        return Path(os.environ.get("XDG_CONFIG_HOME") or _home() / ".config") / "kaggle"
    return legacy


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return ""


def kaggle_json() -> dict:
    """kaggle.json where kaggle 2.2.5 reads it, as a dict ({} when absent or unreadable)."""
    try:
        value = json.loads(_read(_config_dir() / "kaggle.json") or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def token_source():
    """Where the kaggle program will find credentials (a description, never the value), or None.

    The places kaggle 2.2.5 reads (KaggleApi.authenticate, kagglesdk.get_access_token_from_env):
    $KAGGLE_API_TOKEN (the token or a file), ~/.kaggle/access_token(.txt), $KAGGLE_USERNAME +
    $KAGGLE_KEY, kaggle.json in $KAGGLE_CONFIG_DIR or ~/.kaggle (or ~/.config/kaggle), the OAuth
    credentials of `kaggle auth login` (~/.kaggle/credentials.json), and $KAGGLE_API_V1_TOKEN inside
    a Kaggle notebook.
    """
    env = os.environ
    if env.get("KAGGLE_API_TOKEN"):
        return "$KAGGLE_API_TOKEN"
    for name in ("access_token", "access_token.txt"):
        if _read(_home() / ".kaggle" / name):
            return f"~/.kaggle/{name}"
    config = kaggle_json()
    username = env.get("KAGGLE_USERNAME") or config.get("username")
    key = env.get("KAGGLE_KEY") or config.get("key")
    if username and key:
        return "$KAGGLE_USERNAME/$KAGGLE_KEY" if env.get("KAGGLE_KEY") else str(_config_dir() / "kaggle.json")
    try:
        oauth = json.loads(_read(_home() / ".kaggle" / "credentials.json") or "{}")
    except ValueError:
        oauth = {}
    if isinstance(oauth, dict) and oauth.get("refresh_token"):
        return "~/.kaggle/credentials.json (kaggle auth login)"
    notebook_token = env.get("KAGGLE_API_V1_TOKEN")
    if notebook_token and Path(notebook_token).is_file():
        return "$KAGGLE_API_V1_TOKEN"
    return None


def _secrets() -> list:
    """Token values that may exist here, to be masked in anything relayed from the kaggle program."""
    values = [os.environ.get("KAGGLE_KEY", ""), os.environ.get("KAGGLE_API_TOKEN", ""),
              str(kaggle_json().get("key", ""))]
    for name in ("access_token", "access_token.txt"):
        values.append(_read(_home() / ".kaggle" / name))
    token = os.environ.get("KAGGLE_API_TOKEN", "")
    if token and Path(token).is_file():
        values.append(_read(Path(token)))
    try:
        oauth = json.loads(_read(_home() / ".kaggle" / "credentials.json") or "{}")
        values += [str(oauth.get("refresh_token", "")), str(oauth.get("access_token", ""))]
    except (ValueError, AttributeError):
        pass
    return sorted({v for v in values if len(v) >= 6}, key=len, reverse=True)


def redact(text: str) -> str:
    for secret in _secrets():
        text = text.replace(secret, "***")
    return text


def require_kaggle() -> str:
    """The kaggle program's path; FkdError (one line) without the program or without a token."""
    program = find_program()
    if program is None:
        raise FkdError(PROGRAM_HELP)
    if token_source() is None:
        raise FkdError(TOKEN_HELP)
    return program


def call(args, program=None, check=True, echo=True) -> str:
    """Run `kaggle ARGS`, return its output (stdout + stderr, token values masked)."""
    program = program or require_kaggle()
    args = [str(a) for a in args]
    shown = "kaggle " + " ".join(args)
    print(f"$ {shown}", flush=True)
    try:
        result = subprocess.run([program, *args], capture_output=True, text=True)
    except OSError as error:
        raise FkdError(f"could not run {program}: {error.strerror}") from None
    output = redact((result.stdout or "") + (result.stderr or ""))
    if echo and output.strip():
        print(output.rstrip(), flush=True)
    if "Authentication required" in output or ("401" in output and "Unauthorized" in output):
        raise FkdError(f"`{shown}`: the token was refused. " + TOKEN_HELP.replace("no Kaggle token: ", ""))
    if check and result.returncode != 0:
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        last = lines[-1] if lines else "no output"
        if "403" in output and args[:1] == ["competitions"]:
            last += f" (accept the competition rules first: {RULES_URL})"
        raise FkdError(f"`{shown}` failed with exit status {result.returncode}: {last}")
    return output
