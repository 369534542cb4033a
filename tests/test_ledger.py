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


def test_a_ledger_given_that_does_not_exist_is_not_an_empty_ledger(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    typo = tmp_path / "submisions" / "ledger.csv"
    assert main(["ledger", "--ledger", str(typo), "--no-plot"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"{typo}: no such ledger" in err, err
    assert main(["ledger", "--no-plot"]) == 0                  # the default, absent: nothing submitted yet
    assert "no submissions yet" in capsys.readouterr().out


@pytest.mark.parametrize("content, says", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "not UTF-8 text"),
    (b"submitted_utc,file,message\n2024," + b"x" * 200_000 + b",m\n", "not a readable CSV file"),  # a field past csv's limit
])
def test_a_ledger_that_is_not_a_csv_file_is_one_line_naming_it(content, says, tmp_path, capsys):
    path = tmp_path / "some.png"
    path.write_bytes(content)
    assert main(["ledger", "--ledger", str(path), "--no-plot"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"{path}: not a ledger: {says}" in err, err
    with pytest.raises(FkdError, match=says):
        ledger.append_row(row(1), path)                        # `fkd kaggle submit` refuses it too
    assert path.read_bytes() == content
