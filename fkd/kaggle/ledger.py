"""`fkd ledger`: every leaderboard submission with the CV score behind it, and whether CV predicts LB.

`submissions/ledger.csv` gets one row per `fkd kaggle submit` (time, file, runs, OOF RMSE, message);
`fkd kaggle sync` fills in the public/private scores. This command prints the table and plots LB
against CV (reports/ledger.png). Writes are atomic: the file is rewritten whole, then renamed.
"""
import csv
import io
import math
from pathlib import Path

from fkd.core.atomic import write_text
from fkd.core.errors import FkdError

DEFAULT_LEDGER = Path("submissions") / "ledger.csv"
DEFAULT_PLOT = Path("reports") / "ledger.png"

# submitted_utc: ISO time the submission was sent; runs: ';'-separated run folders;
# ref: Kaggle's submission id; status: Kaggle's scoring status (pending/complete/error)
COLUMNS = ["submitted_utc", "file", "runs", "oof_rmse", "message",
           "public_score", "private_score", "status", "ref"]


def read_ledger(path=DEFAULT_LEDGER) -> list:
    """Rows of the ledger as dicts (all values strings); [] when the file does not exist yet."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            missing = [c for c in ("submitted_utc", "file", "message") if c not in header]
            if missing:
                raise FkdError(f"not a ledger: header lacks {', '.join(missing)}", path=path, row="header")
            return [{c: (row.get(c) or "") for c in COLUMNS} for row in reader]
    except UnicodeDecodeError:
        raise FkdError("not a ledger: not UTF-8 text (a ledger is the CSV file `fkd kaggle submit` writes)",
                       path=path) from None
    except csv.Error as error:
        raise FkdError(f"not a ledger: not a readable CSV file ({error})", path=path) from None


def write_ledger(rows, path=DEFAULT_LEDGER) -> Path:
    """Rewrite the whole ledger atomically (temp file + rename)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: _cell(row.get(c)) for c in COLUMNS})
    return write_text(path, buffer.getvalue())


def append_row(row: dict, path=DEFAULT_LEDGER) -> Path:
    return write_ledger(read_ledger(path) + [row], path)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    if isinstance(value, (list, tuple)):
        return ";".join(str(v) for v in value)
    return str(value)


def as_float(text):
    """A score cell as float, None when empty or not a number ('None', 'nan', '')."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


# ---------------------------------------------------------------- table and plot

def format_table(rows) -> str:
    shown = ["submitted_utc", "file", "oof_rmse", "public_score", "private_score", "status", "message"]
    table = [[Path(r["file"]).name if c == "file" else _short(r.get(c, ""), c) for c in shown] for r in rows]
    widths = [max([len(c)] + [len(line[i]) for line in table]) for i, c in enumerate(shown)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(shown, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in table]
    return "\n".join(lines)


def _short(value: str, column: str) -> str:
    if column in ("oof_rmse", "public_score", "private_score"):
        number = as_float(value)
        return "" if number is None else f"{number:.5f}"
    if column == "submitted_utc":
        return value[:19].replace("T", " ")
    if column == "message" and len(value) > 40:
        return value[:37] + "..."
    return value


def _pearson(x, y):
    n = len(x)
    if n < 3:
        return None
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else None


def summary(rows) -> dict:
    """Pairs (cv, lb) for public and private scores, and their correlations."""
    out = {}
    for board in ("public", "private"):
        pairs = [(as_float(r["oof_rmse"]), as_float(r[f"{board}_score"]), r) for r in rows]
        pairs = [(cv, lb, r) for cv, lb, r in pairs if cv is not None and lb is not None]
        x = [p[0] for p in pairs]
        y = [p[1] for p in pairs]
        out[board] = {"pairs": pairs, "pearson": _pearson(x, y),
                      "mean_gap": (sum(b - a for a, b in zip(x, y)) / len(x)) if x else None}
    return out


def plot(rows, out_path=DEFAULT_PLOT):
    """Scatter of LB RMSE against CV RMSE with the y = x line; None when no row has both scores."""
    stats = summary(rows)
    if not stats["public"]["pairs"] and not stats["private"]["pairs"]:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fkd.core.atomic import atomic_path

    fig, ax = plt.subplots(figsize=(6.5, 6))
    values = []
    for board, marker, colour in (("public", "o", "tab:blue"), ("private", "s", "tab:orange")):
        pairs = stats[board]["pairs"]
        if not pairs:
            continue
        x = [p[0] for p in pairs]
        y = [p[1] for p in pairs]
        values += x + y
        r = stats[board]["pearson"]
        label = f"{board} LB (n={len(x)}" + (f", r={r:.2f})" if r is not None else ")")
        ax.scatter(x, y, marker=marker, color=colour, label=label, alpha=0.8)
        if board == "public":
            for cv, lb, row in pairs:
                ax.annotate(Path(row["file"]).stem[-24:], (cv, lb), fontsize=7, alpha=0.7,
                            xytext=(3, 3), textcoords="offset points")
    low, high = min(values), max(values)
    pad = 0.05 * (high - low or 1.0)
    ax.plot([low - pad, high + pad], [low - pad, high + pad], "k--", lw=1, label="LB = CV")
    ax.set_xlim(low - pad, high + pad)
    ax.set_ylim(low - pad, high + pad)
    ax.set_xlabel("CV (out-of-fold) RMSE, pixels")
    ax.set_ylabel("leaderboard RMSE, pixels")
    ax.set_title("Does CV predict the leaderboard?")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, format=out_path.suffix.lstrip(".") or "png", dpi=120)
    plt.close(fig)
    return out_path


# ---------------------------------------------------------------- command

def add_arguments(parser):
    parser.add_argument("--ledger", help=f"ledger file (default {DEFAULT_LEDGER}; a --ledger given must exist)")
    parser.add_argument("--plot", default=str(DEFAULT_PLOT),
                        help="where the LB-vs-CV plot goes (default %(default)s)")
    parser.add_argument("--no-plot", action="store_true", help="print the table only")


def run(args):
    path = Path(args.ledger) if args.ledger is not None else DEFAULT_LEDGER
    if args.ledger is not None and not path.is_file():  # a mistyped path is not an empty ledger
        raise FkdError("no such ledger (leave --ledger out for the default, "
                       f"{DEFAULT_LEDGER}, which `fkd kaggle submit` writes)", path=path)
    rows = read_ledger(path)
    if not rows:
        print(f"{path}: no submissions yet (`fkd kaggle submit --file F --message M` adds rows)")
        return 0
    print(format_table(rows))
    stats = summary(rows)
    for board in ("public", "private"):
        pairs, r, gap = stats[board]["pairs"], stats[board]["pearson"], stats[board]["mean_gap"]
        if pairs:
            line = f"{board}: {len(pairs)} rows with CV and LB; LB - CV = {gap:+.4f} on average"
            print(line + (f"; Pearson r = {r:.3f}" if r is not None else "; r needs 3 rows or more"))
    if not stats["public"]["pairs"] and not stats["private"]["pairs"]:
        print("no row has both a CV score and a leaderboard score yet: `fkd kaggle sync` reads scores back")
        return 0
    if not args.no_plot:
        print(f"plot: {plot(rows, args.plot)}")
    return 0
