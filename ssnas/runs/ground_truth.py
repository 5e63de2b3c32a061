"""Ground truth during a search: a NAS benchmark's results table, looked up after every epoch.

NAS libraries measure a search this way (NASLib's and AutoDL-Projects' benchmark query APIs): the cell the
search derives at the end of each epoch is looked up in a table of fully trained cells, which gives its true
test accuracy, its rank among all cells and its percentile. The search itself never reads the table: only the
logger does, after the epoch's genotype is fixed (tests/test_strategies.py proves the trajectory is identical
with and without `--benchmark`).

The table is the user's own file (ssnas ships none): a CSV with a header, one row per cell, an `arch` column in
the space's own text format (for NAS-Bench-201, the benchmark string `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`) and
one or more numeric columns, e.g. `cifar10_test,cifar100_test,imagenet16_test` (NATS-Bench TSS, 200 epochs).
"""
from __future__ import annotations

import bisect
import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ssnas.errors import UserError

ARCH_COLUMN = "arch"
MAX_TABLE_BYTES = 256 * 2**20  # NATS-Bench TSS's three test columns take about 2 MB


@dataclass(frozen=True)
class Lookup:
    """One column's verdict on a cell: its value, its rank among all cells (1 = best) and the share of cells at
    least as good (the percentile, 100 * rank / cells: 1.0 means top 1%)."""

    value: float
    rank: int
    cells: int

    @property
    def percentile(self) -> float:
        return 100.0 * self.rank / self.cells


class BenchmarkTable:
    """A results table keyed by the space's text form of a genotype; higher values are better."""

    def __init__(self, path: Path, columns: list[str], rows: dict[str, tuple[float, ...]]):
        self.path = path
        self.columns = columns
        self._rows = rows
        # each column sorted ascending, for ranks by bisection: rank = 1 + number of strictly greater values
        self._sorted = [sorted(values[c] for values in rows.values()) for c in range(len(columns))]

    def __len__(self) -> int:
        return len(self._rows)

    @classmethod
    def load(cls, path: str | Path, parse_arch: Callable[[str, str], Any], space: str) -> "BenchmarkTable":
        """Read and check the whole table; `parse_arch(text, source)` is the space's `parse_text` (None = not
        this space's format). Every problem is a one-line UserError naming the file and the line."""
        path = Path(path)
        if not path.is_file():
            raise UserError(f"--benchmark {path}: no such file; give a CSV results table with an '{ARCH_COLUMN}' "
                            f"column and numeric columns (e.g. NAS-Bench-201's cifar10_test)")
        if path.stat().st_size > MAX_TABLE_BYTES:
            raise UserError(f"--benchmark {path}: {path.stat().st_size / 2**20:.0f} MB is larger than a results "
                            f"table should be ({MAX_TABLE_BYTES // 2**20} MB at most); is it the right file?")
        try:
            with path.open(newline="", encoding="utf-8") as f:
                reader = csv.reader(f)
                header = next(reader, None)
                if not header or ARCH_COLUMN not in header:
                    raise UserError(f"--benchmark {path}: the first line must be a CSV header with an "
                                    f"'{ARCH_COLUMN}' column, got {','.join(header or [])[:80]!r}")
                arch_at = header.index(ARCH_COLUMN)
                columns = [(i, name.strip()) for i, name in enumerate(header) if i != arch_at]
                if not columns:
                    raise UserError(f"--benchmark {path}: the header has no result column beside '{ARCH_COLUMN}'")
                rows: dict[str, tuple[float, ...]] = {}
                for line, record in enumerate(reader, start=2):
                    if not record:
                        continue
                    arch, values = _row(path, line, record, arch_at, columns, len(header))
                    if parse_arch(arch, f"--benchmark {path}, line {line}") is None:
                        raise UserError(f"--benchmark {path}, line {line}: {arch[:80]!r} is not a {space} genotype; "
                                        f"this table belongs to another search space")
                    if arch in rows:
                        raise UserError(f"--benchmark {path}, line {line}: {arch[:80]!r} appears twice")
                    rows[arch] = values
        except UnicodeDecodeError:
            raise UserError(f"--benchmark {path}: not a UTF-8 text file; give a CSV results table") from None
        except csv.Error as e:
            raise UserError(f"--benchmark {path}: not a valid CSV file ({e})") from None
        if not rows:
            raise UserError(f"--benchmark {path}: the table has a header but no rows")
        return cls(path, [name for _, name in columns], rows)

    def lookup(self, arch: str) -> dict[str, Lookup] | None:
        """Every column's value, rank and percentile for `arch` (the space's text form), or None if the table
        does not list it."""
        values = self._rows.get(arch)
        if values is None:
            return None
        n = len(self._rows)
        return {name: Lookup(v, 1 + n - bisect.bisect_right(self._sorted[c], v), n)
                for c, (name, v) in enumerate(zip(self.columns, values))}


def _row(path: Path, line: int, record: list[str], arch_at: int, columns: list[tuple[int, str]],
         width: int) -> tuple[str, tuple[float, ...]]:
    if len(record) != width:
        raise UserError(f"--benchmark {path}, line {line}: {len(record)} fields where the header has {width}")
    values = []
    for i, name in columns:
        try:
            value = float(record[i])
        except ValueError:
            raise UserError(f"--benchmark {path}, line {line}: column {name!r} holds {record[i][:40]!r}, "
                            f"not a number") from None
        if not math.isfinite(value):
            raise UserError(f"--benchmark {path}, line {line}: column {name!r} holds {record[i]!r}; "
                            f"results must be finite numbers")
        values.append(value)
    return record[arch_at].strip(), tuple(values)


def epoch_truth(table: BenchmarkTable | None, arch: str | None) -> dict[str, float]:
    """The flat fields an epoch row gets from the table: `true_<column>`, `rank_<column>`, `top_pct_<column>`
    (empty without a table; NaN-free: a cell missing from the table logs `true_missing: 1`)."""
    if table is None or arch is None:
        return {}
    found = table.lookup(arch)
    if found is None:
        return {"true_missing": 1}
    out: dict[str, float] = {}
    for name, hit in found.items():
        out[f"true_{name}"] = hit.value
        out[f"rank_{name}"] = hit.rank
        out[f"top_pct_{name}"] = round(hit.percentile, 3)
    return out
