"""`fkd kaggle ...`: thin wrappers over the `kaggle` program (kaggle==2.2.5), run as a subprocess.

    fkd kaggle push     --kernel-dir build/kernel    kaggle kernels push -p DIR (fold kernels, then the ensemble)
    fkd kaggle status   --kernel-dir build/kernel    kaggle kernels status OWNER/SLUG
    fkd kaggle logs     --kernel-dir build/kernel    kaggle kernels logs OWNER/SLUG [--follow]
    fkd kaggle output   --kernel-dir build/kernel --runs-dir runs
                                                     kaggle kernels output OWNER/SLUG -p DIR; runs/* -> runs/
    fkd kaggle download --out data                   kaggle competitions download facial-keypoints-detection -p data
    fkd kaggle submit   --file F --message M         kaggle competitions submit facial-keypoints-detection -f F -m M
                                                     + a row in submissions/ledger.csv
    fkd kaggle sync                                  kaggle competitions submissions facial-keypoints-detection --csv
                                                     -> public/private scores into the ledger

Each command first checks that the `kaggle` program exists and that a token is in one of the places
kaggle 2.2.5 reads, and otherwise stops with one line saying what to do. No token value is ever
printed: the kaggle program's output is relayed with any token value masked.
"""
from fkd.kaggle import ledger
from fkd.kaggle.download import cmd_download
from fkd.kaggle.kernels import cmd_logs, cmd_output, cmd_push, cmd_status
from fkd.kaggle.leaderboard import cmd_submit, cmd_sync
from fkd.kaggle.program import COMPETITION


def add_arguments(parser):
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name, help_text):
        """An action whose --help opens with its help line."""
        return actions.add_parser(name, help=help_text, description=help_text)

    def kernel_dir(p):
        p.add_argument("--kernel-dir", default="build/kernel", help="bundle folder (default %(default)s)")
        p.add_argument("--only", nargs="+", metavar="KERNEL",
                       help="only these kernels (folder name like fold0/ensemble, role, or id)")

    p = action("push", "kaggle kernels push -p DIR (fold kernels first, the ensemble once they finish)")
    kernel_dir(p)
    p.add_argument("--accelerator", help="kaggle's --accelerator, e.g. NvidiaTeslaT4 (GPU T4 x2)")
    p.add_argument("--timeout", type=int, help="kernel run-time limit in seconds")
    p.add_argument("--no-wait", action="store_true",
                   help="push the ensemble at once (it then blends the fold kernels' previous outputs)")
    p.add_argument("--poll", type=float, default=60.0, help="seconds between status checks (default 60)")
    p.set_defaults(func=cmd_push)

    p = action("status", "kaggle kernels status OWNER/SLUG for each kernel")
    kernel_dir(p)
    p.add_argument("--wait", action="store_true", help="repeat until no kernel is queued or running")
    p.add_argument("--poll", type=float, default=60.0, help="seconds between checks with --wait")
    p.set_defaults(func=cmd_status)

    p = action("logs", "kaggle kernels logs OWNER/SLUG")
    kernel_dir(p)
    p.add_argument("--follow", action="store_true", help="stream the log of a running kernel")
    p.set_defaults(func=cmd_logs)

    p = action("output", "kaggle kernels output OWNER/SLUG; copy its runs/ into --runs-dir")
    kernel_dir(p)
    p.add_argument("--runs-dir", default="runs", help="where the kernels' runs go (default %(default)s)")
    p.set_defaults(func=cmd_output)

    p = action("download", "kaggle competitions download; unzip; check the files")
    p.add_argument("--out", default="data", help="competition folder (default %(default)s)")
    p.add_argument("--force", action="store_true", help="download even if the files are there")
    p.add_argument("--competition", default=COMPETITION, help=argparse_suppress())
    p.set_defaults(func=cmd_download)

    p = action("submit", "kaggle competitions submit + a ledger row")
    p.add_argument("--file", required=True, help="submission csv (its <file>.json sidecar names the runs)")
    p.add_argument("--message", "-m", required=True, help="submission description")
    p.add_argument("--ledger", default=str(ledger.DEFAULT_LEDGER), help="ledger file (default %(default)s)")
    p.add_argument("--lookup", default="data/IdLookupTable.csv",
                   help="check the file against this lookup first (default %(default)s)")
    p.add_argument("--no-check", action="store_true", help="submit without checking the file")
    p.add_argument("--competition", default=COMPETITION, help=argparse_suppress())
    p.set_defaults(func=cmd_submit)

    p = action("sync", "read public/private scores back into the ledger")
    p.add_argument("--ledger", default=str(ledger.DEFAULT_LEDGER), help="ledger file (default %(default)s)")
    p.add_argument("--competition", default=COMPETITION, help=argparse_suppress())
    p.set_defaults(func=cmd_sync)


def argparse_suppress():
    import argparse
    return argparse.SUPPRESS


def run(args):
    return args.func(args)
