"""Tables from CSV (the ``csv`` module, no pandas needed) and Parquet files (pyarrow), and their columns typed.

Every value is read as text first, from either format, so a model trained on a Parquet file predicts from a CSV
export of it alike. A column is *numeric* when each of its present values parses as a number, else
*categorical*. Missing values are empty cells and, in any case, ``NA``, ``N/A``, ``NaN``, ``null``, ``None``,
and ``?``.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._common import CLIError, one_line

__all__ = ["MISSING", "Table", "column_kind", "is_missing", "parse_numbers", "read_table"]

#: Cell texts that mean "no value" (compared after stripping spaces, in any case).
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})
PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass
class Table:
    """Named columns of text values, all of one length, read from ``path``.

    Examples
    --------
    >>> t = Table("data.csv", ["x", "y"], {"x": ["1", "2"], "y": ["a", "b"]})
    >>> t.n_rows, t.column("y")
    (2, ['a', 'b'])
    """

    path: str
    names: list[str]
    columns: dict[str, list[str]] = field(repr=False)

    @property
    def n_rows(self) -> int:
        """The number of data rows."""
        return len(self.columns[self.names[0]]) if self.names else 0

    def column(self, name: str, role: str = "column") -> list[str]:
        """The values of column ``name``; CLIError naming the columns there are when it is missing."""
        if name not in self.columns:
            raise CLIError(f"{role} {name!r} is not in {self.path}; its columns are: {', '.join(self.names)}")
        return self.columns[name]

    def take(self, rows: np.ndarray) -> Table:
        """The table of the given rows (an index or boolean mask)."""
        cols = {n: np.asarray(v, dtype=object)[rows].tolist() for n, v in self.columns.items()}
        return Table(self.path, list(self.names), cols)


def read_table(path: str | os.PathLike) -> Table:
    """Read a CSV (or TSV, or semicolon-separated) file, or a Parquet file (``.parquet`` / ``.pq``, needs pyarrow).

    Parameters
    ----------
    path : str or path-like
        The file; the first line of a CSV file names the columns. The separator is the most frequent of ``,``
        ``;`` and tab in that line.

    Returns
    -------
    Table
        Every value as text (stripped of surrounding spaces; missing values in Parquet as '').

    Raises
    ------
    CLIError
        For a file that is empty, not text, not rectangular, has no rows, or repeats a column name; for Parquet
        when pyarrow is not installed (the message says what to install).

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "pets.csv")
    >>> _ = open(path, "w").write("name,age\\ncat, 3\\ndog,\\n")
    >>> t = read_table(path)
    >>> t.names, t.n_rows, t.column("age")
    (['name', 'age'], 2, ['3', ''])
    """
    path = os.fspath(path)
    if path.lower().endswith(PARQUET_SUFFIXES):
        return _read_parquet(path)
    return _read_csv(path)


def _read_csv(path: str) -> Table:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            first = f.readline()
            if not first.strip():
                raise CLIError(f"{path} is empty: a CSV file needs a header line naming its columns, then rows")
            delimiter = max((",", ";", "\t"), key=first.count)
            f.seek(0)
            reader = csv.reader(f, delimiter=delimiter)
            header = [h.strip() for h in next(reader)]
            _check_header(path, header)
            rows = []
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # a blank line
                if len(row) != len(header):
                    raise CLIError(
                        f"{path} line {reader.line_num}: {len(row)} values, but the header names {len(header)} columns"
                    )
                rows.append([v.strip() for v in row])
    except UnicodeDecodeError:
        raise CLIError(f"{path} is not a text file: expected a CSV file (UTF-8) or a .parquet file") from None
    except csv.Error as exc:
        raise CLIError(f"{path} is not a readable CSV file: {one_line(exc)}") from None
    if not rows:
        raise CLIError(f"{path} has a header but no rows of data")
    columns = {name: [row[i] for row in rows] for i, name in enumerate(header)}
    return Table(path, header, columns)


def _check_header(path: str, header: list[str]) -> None:
    empty = [i + 1 for i, h in enumerate(header) if not h]
    if empty:
        raise CLIError(f"{path}: the header leaves column {empty[0]} unnamed; name every column in the first line")
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise CLIError(f"{path}: the header names {', '.join(map(repr, repeated))} more than once")


def _read_parquet(path: str) -> Table:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise CLIError(f"reading {path} needs pyarrow (Parquet files): pip install pyarrow") from None
    if not os.path.exists(path):
        raise FileNotFoundError(2, "No such file or directory", path)
    try:
        data = pq.read_table(path).to_pydict()
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise CLIError(f"{path} is not a readable Parquet file: {one_line(exc)}") from None
    header = [str(name) for name in data]
    _check_header(path, header)
    columns = {str(name): [_text(v) for v in values] for name, values in data.items()}
    table = Table(path, header, columns)
    if table.n_rows == 0:
        raise CLIError(f"{path} has no rows of data")
    return table


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value).strip()


def is_missing(value: str) -> bool:
    """Whether a cell's text means "no value".

    Examples
    --------
    >>> [is_missing(v) for v in ("", "NA", " nan ", "?", "0", "none of these")]
    [True, True, True, True, False, False]
    """
    return value.strip().lower() in MISSING


def parse_numbers(values: list[str]) -> tuple[np.ndarray | None, int]:
    """The values as float64 (NaN where missing), and the index of the first value that is not a number (-1: none).

    Examples
    --------
    >>> parse_numbers(["1", "", "2.5e1"])
    (array([ 1., nan, 25.]), -1)
    >>> parse_numbers(["1", "two"])
    (None, 1)
    """
    try:
        return np.array(values, dtype=np.float64), -1  # fast: every value is a number
    except ValueError:
        pass
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        if is_missing(v):
            out[i] = np.nan
            continue
        try:
            out[i] = float(v)
        except ValueError:
            return None, i
    return out, -1


def column_kind(values: list[str]) -> str:
    """``'numeric'`` when every present value is a number, else ``'categorical'``.

    Examples
    --------
    >>> column_kind(["1", "NA", "3"]), column_kind(["red", "", "blue"])
    ('numeric', 'categorical')
    """
    return "numeric" if parse_numbers(values)[0] is not None else "categorical"


def feature_matrix(table: Table, names: list[str], kinds: dict[str, str]) -> np.ndarray:
    """The columns ``names`` as one object array: numbers (NaN where missing) in numeric columns, text (NaN where
    missing) in categorical ones; CLIError for a missing column or text in a column that must hold numbers."""
    absent = [n for n in names if n not in table.columns]
    if absent:
        raise CLIError(
            f"{table.path} lacks the column(s) {', '.join(map(repr, absent))} that the model was trained on; its "
            f"columns are: {', '.join(table.names)}"
        )
    X = np.empty((table.n_rows, len(names)), dtype=object)
    for j, name in enumerate(names):
        values = table.columns[name]
        if kinds[name] == "numeric":
            numbers, bad = parse_numbers(values)
            if numbers is None:
                raise CLIError(
                    f"column {name!r} of {table.path} holds {values[bad]!r} (row {bad + 1}), but it holds numbers "
                    "for the model"
                )
            X[:, j] = numbers
        else:
            X[:, j] = [np.nan if is_missing(v) else v for v in values]
    return X
