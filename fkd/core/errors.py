"""The one error type users see: a single line naming the file, row and column at fault."""


class FkdError(Exception):
    """Bad input or a refused action. The CLI prints it as one line, without a traceback."""

    def __init__(self, message: str, path=None, row=None, column=None):
        where = ", ".join(
            part for part in (
                str(path) if path is not None else None,
                f"row {row}" if row is not None else None,
                f"column {column}" if column is not None else None,
            ) if part
        )
        super().__init__(f"{where}: {message}" if where else message)


def row_label(index: int) -> str:
    """Data row `index` (0-based) of a csv with a header: its row number and its line in the file."""
    return f"{index + 1} (line {index + 2})"
