"""`fkd COMMAND ...` (or `python -m fkd COMMAND ...`): one sub-command per module, each with
add_arguments(parser) and run(args). Modules are imported only when their command runs, so
`fkd synth` never pays for importing torch.
"""
import argparse
import importlib
import os
import sys

from fkd.core.errors import FkdError

# command -> (module, one-line help)
COMMANDS = {
    "synth": ("fkd.data.synth", "write a synthetic competition folder in Kaggle's format"),
    "config": ("fkd.model.configcheck", "every config key with its default, values and meaning; or a config file resolved"),
    "cv": ("fkd.train.cv", "K-fold cross-validation of a config -> runs/<name>/"),
    "submit": ("fkd.submit.command", "predict the test set (mean shape or an ensemble of runs) -> submissions/"),
    "check-submission": ("fkd.submit.check", "validate a submission file against IdLookupTable.csv (and score it: --answers)"),
    "holdout": ("fkd.data.holdout", "keep one fold of a folder's training rows out as a test set with answers (a local leaderboard)"),
    "bench": ("fkd.bench", "print speed and accuracy figures"),
    "eda": ("fkd.show.eda", "plots of a competition's data -> reports/eda/"),
    "report": ("fkd.show.report", "plots of a finished run: curves, per-keypoint RMSE, worst predictions"),
    "export": ("fkd.submit.export", "the ensemble of runs as one ONNX file (checked against fkd's own predictions)"),
    "calibrate": ("fkd.photo.frame", "where MTCNN puts its landmarks on a run's training faces, for fkd face's crops"),
    "face": ("fkd.photo.command", "find faces in photos and videos and draw the predicted keypoints on them"),
    "tune": ("fkd.tune.command", "recipe search on Optuna: trials are fkd runs (SQLite here, PostgreSQL across machines)"),
    "kernel": ("fkd.kaggle.bundle", "build the single-file Kaggle kernel bundle"),
    "kaggle": ("fkd.kaggle.command", "push/status/output a kernel, submit to the leaderboard, sync scores"),
    "ledger": ("fkd.kaggle.ledger", "table (and plot) of leaderboard scores against CV scores"),
}


DESCRIPTION = "Facial keypoints on 96x96 faces, for Kaggle's Facial Keypoints Detection: train, blend, submit."
EPILOG = """the loop:
  fkd cv --config configs/cpu.yaml          K-fold CV -> runs/cpu/ (rerun to resume)
  fkd submit --runs runs/cpu runs/other     blend -> submissions/<time>-<name>.csv, checked
  fkd kernel --config configs/gpu.yaml      a single-file Kaggle GPU kernel; fkd kaggle push
  fkd face photo.jpg --runs runs/cpu        keypoints drawn on any photo
`fkd COMMAND --help` gives each command's options; the Makefile wraps them (make help)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fkd", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, description=help_text)
    return parser


def follow_up(argv) -> None:
    """A command that follows another (the report after cv): its failure is told, never fatal."""
    try:
        status = main(argv)
    except Exception as error:  # noqa: BLE001 - the plots are a convenience: never lose a finished run to them
        status = f"{type(error).__name__}: {error}"
    if status:
        print(f"fkd {argv[0]} skipped ({status}); run `fkd {' '.join(argv)}` to retry", file=sys.stderr)


def _usage_error(name: str, message: str):
    """An option argparse refuses: one line, as every other error, and exit 2."""
    print(f"fkd {name}: error: {message} (fkd {name} --help lists the options)", file=sys.stderr)
    raise SystemExit(2)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv)  # prints usage, or the list of commands, and exits
        return 2
    name = argv[0]
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(module_name)
    command_parser = argparse.ArgumentParser(prog=f"fkd {name}", description=help_text)
    command_parser.error = lambda message: _usage_error(name, message)
    module.add_arguments(command_parser)
    args = command_parser.parse_args(argv[1:])
    try:
        status = module.run(args) or 0
        if status == 0 and getattr(args, "then", None):  # `fkd cv` of a finished run: its report follows
            follow_up(args.then)
        return status
    except FkdError as error:
        print(f"fkd {name}: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `fkd config | head`: the reader left; nothing more to say
        sys.stdout = open(os.devnull, "w")
        return 0
    except OSError as error:  # a place the command meant to write or read that the system refused
        if error.filename is None:
            raise
        print(f"fkd {name}: error: {error.filename}: {error.strerror or error}: check the path and its "
              "permissions, or pass another folder", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        resumes = "; run the same command again to resume: finished folds are kept and the fold in training goes on from its last finished epoch" if name == "cv" else ""
        print(f"fkd {name}: interrupted{resumes}", file=sys.stderr)
        return 130
