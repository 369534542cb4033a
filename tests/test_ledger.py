"""The leaderboard ledger: atomic rows, the table, the LB-vs-CV plot."""
import pytest

from fkd.cli import main
from fkd.core.errors import FkdError
from fkd.kaggle import ledger


def row(i, cv="", public="", private="", message="m"):
    return {"submitted_utc": f"2024-01-0{i}T10:00:00+00:00", "file": f"submissions/s{i}.csv",
            "runs": ["runs/a", "runs/b"], "oof_rmse": cv, "message": message,
            "public_score": public, "private_score": private, "status": "complete", "ref": str(i)}


def test_rows_round_trip_atomically(tmp_path):
    path = tmp_path / "submissions" / "ledger.csv"
    assert ledger.read_ledger(path) == []
    ledger.append_row(row(1, cv=1.5, message='with, a comma and "quotes"'), path)
    ledger.append_row(row(2, cv=float("nan")), path)
    rows = ledger.read_ledger(path)
    assert [r["ref"] for r in rows] == ["1", "2"]
    assert rows[0]["runs"] == "runs/a;runs/b" and rows[0]["oof_rmse"] == "1.5"
    assert rows[0]["message"] == 'with, a comma and "quotes"' and rows[1]["oof_rmse"] == ""
    assert path.read_text().splitlines()[0] == ",".join(ledger.COLUMNS)
    assert sorted(p.name for p in path.parent.iterdir()) == ["ledger.csv"]  # no temp file left


def test_not_a_ledger(tmp_path):
    path = tmp_path / "ledger.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(FkdError, match="not a ledger"):
        ledger.read_ledger(path)


def test_summary_and_correlation():
    rows = [row(1, 1.5, 1.6, 1.65), row(2, 2.0, 2.2, 2.1), row(3, 3.0, 3.1, 3.3), row(4, 2.5)]
    rows = [{k: ledger._cell(v) for k, v in r.items()} for r in rows]
    stats = ledger.summary(rows)
    assert len(stats["public"]["pairs"]) == 3 and stats["public"]["pearson"] > 0.95
    assert stats["public"]["mean_gap"] == pytest.approx((0.1 + 0.2 + 0.1) / 3)


def test_command_prints_table_and_plots(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "submissions" / "ledger.csv"
    assert main(["ledger"]) == 0
    assert "no submissions yet" in capsys.readouterr().out
    ledger.write_ledger([row(1, 1.5, 1.6), row(2, 2.0, 2.2, 2.1), row(3, 3.0, 3.1), row(4, 2.5)], path)
    assert main(["ledger", "--plot", str(tmp_path / "reports" / "lb.png")]) == 0
    out = capsys.readouterr().out
    assert "s1.csv" in out and "1.50000" in out and "Pearson" in out
    png = (tmp_path / "reports" / "lb.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_command_without_scores_makes_no_plot(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    ledger.write_ledger([row(1, 1.5)], tmp_path / "submissions" / "ledger.csv")
    assert main(["ledger"]) == 0
    assert "fkd kaggle sync" in capsys.readouterr().out
    assert not (tmp_path / "reports").exists()
