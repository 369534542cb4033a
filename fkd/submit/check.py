from fkd.data.competition import load_lookup
from fkd.submit.submission import check_submission

"""`fkd check-submission FILE --lookup IdLookupTable.csv`: validate any submission file."""


def add_arguments(parser):
    parser.add_argument("file", help="submission csv (RowId,Location)")
    parser.add_argument("--lookup", required=True, help="IdLookupTable.csv (or the folder holding it)")


def run(args):
    lookup = load_lookup(args.lookup)
    check_submission(args.file, lookup)
    print(f"{args.file}: ok ({len(lookup)} rows, {lookup['ImageId'].nunique()} images)")
