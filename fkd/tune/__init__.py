"""Recipe search: Optuna studies whose trials are fkd runs (space, study, report, command)."""
