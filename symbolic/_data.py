r"""Fixed-order predictions as data: weighted Monte Carlo events and per-order histograms, read and checked.

Both become a :class:`Histogram`: per order :math:`n`, the bin averages of the regular part of
:math:`p^n` per unit :math:`x` and their Monte Carlo errors. Events are read in chunks (two
passes: one that checks every row, one that bins), so the file's size does not bound memory.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ._errors import SpecError, one_line

__all__ = ["Histogram", "read_events", "read_histogram", "EventSample", "event_sample"]

#: Rows per chunk when reading events.
CHUNK = 1 << 18
#: Largest histogram file read whole.
HISTOGRAM_BYTES = 16 << 20
#: Events per bin below which a bin is merged with its neighbour (its error estimate is not yet Gaussian).
MIN_EVENTS = 100
#: Fine bins per decade of the distance to a singular endpoint, and across a regular support.
PER_DECADE, UNIFORM_BINS = 10, 100
_WEIGHT = re.compile(r"w(\d+)")


@dataclass(frozen=True, eq=False)  # arrays: compared by identity
class Histogram:
    r"""Per-order bin averages of the regular parts :math:`p^n(x)` with their errors.

    Attributes:
        lo, hi: Bin edges (increasing, not overlapping; gaps allowed).
        values: ``{n: averages}``, :math:`\frac{1}{\Delta}\int_{bin} p^n dx` per bin.
        errors: ``{n: errors}`` of those averages (one standard deviation, > 0).
        counts: Events per bin (``None`` for a histogram file).
        endpoint: Events only: ``{n: (sum, error)}`` of the weights at the singular endpoint (the δ parts).
        totals: Events only: ``{n: (sum, error)}`` of all weights, :math:`\int p^n` as the events give it.
        events: How many events (or event groups) the estimate rests on; 0 for a histogram file.
        source: The file, for messages.
        sha256: The file's content hash.
    """

    lo: np.ndarray
    hi: np.ndarray
    values: dict[int, np.ndarray]
    errors: dict[int, np.ndarray]
    source: str
    sha256: str
    counts: np.ndarray | None = None
    endpoint: dict[int, tuple[float, float]] = field(default_factory=dict)
    totals: dict[int, tuple[float, float]] = field(default_factory=dict)
    events: int = 0

    @property
    def orders(self) -> tuple[int, ...]:
        return tuple(sorted(self.values))


def _refuse(path: Path, message: str) -> SpecError:
    return SpecError(f"{one_line(path)}: {message}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _open_checked(path: Path) -> None:
    if not path.is_file():
        raise _refuse(path, "no such data file")
    if path.stat().st_size == 0:
        raise _refuse(path, "the file is empty")


# --- histograms --------------------------------------------------------------------------

def read_histogram(path: str | Path, support: tuple[float, float]) -> Histogram:
    r"""Reads a histogram CSV with header ``lo,hi,p1,p1_err,…`` (bin edges and, per order, the bin
    averages of :math:`p^n` per unit :math:`x` and their errors), or a YODA file (``.yoda``, see
    :func:`_read_yoda`).

    Raises:
        SpecError: In one line naming the file and the problem (a missing or unpaired column,
            a value that is not a finite number, unsorted or overlapping bins, bins outside the
            support, an error that is not positive, an empty or oversized file).
    """
    path = Path(path)
    _open_checked(path)
    if path.stat().st_size > HISTOGRAM_BYTES:
        raise _refuse(path, f"a histogram file larger than {HISTOGRAM_BYTES / 2**20:g} MiB (give the events instead: they are read in chunks)")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _refuse(path, f"not a text {'YODA' if path.suffix == '.yoda' else 'CSV'} file (it is not UTF-8)") from None
    digest = hashlib.sha256(data).hexdigest()
    if path.suffix == ".yoda":
        return _read_yoda(path, text, support, digest)
    rows = [row for row in csv.reader(io.StringIO(text)) if row and not row[0].lstrip().startswith("#")]
    if not rows:
        raise _refuse(path, "no header line (expected lo,hi,p1,p1_err,...)")
    header = [name.strip() for name in rows[0]]
    orders = _histogram_columns(path, header)
    table = _numbers(path, rows[1:], header)
    if table.shape[0] == 0:
        raise _refuse(path, "no bins after the header")
    lo, hi = table[:, header.index("lo")], table[:, header.index("hi")]
    _check_bins(path, lo, hi, support)
    values, errors = {}, {}
    for n in orders:
        values[n] = table[:, header.index(f"p{n}")]
        errors[n] = _positive_errors(path, f"p{n}_err", lo, hi, table[:, header.index(f"p{n}_err")])
    return Histogram(lo, hi, values, errors, str(path), digest)


def _positive_errors(path: Path, label: str, lo: np.ndarray, hi: np.ndarray, error: np.ndarray) -> np.ndarray:
    r"""``error``, refused in one line where a bin's is not positive (the errors weight the fit)."""
    bad = np.nonzero(~(error > 0))[0]
    if bad.size:
        i = bad[0]
        raise _refuse(path, f"{label} is {error[i]:g} in the bin [{lo[i]:g}, {hi[i]:g}]: errors must be positive (they weight the fit)")
    return error


def _histogram_columns(path: Path, header: list[str]) -> list[int]:
    for name in ("lo", "hi"):
        if name not in header:
            raise _refuse(path, f"no column {name!r} in the header {','.join(header)[:80]!r} (expected lo,hi,p1,p1_err,...)")
    if len(set(header)) != len(header):
        raise _refuse(path, "a column name appears twice in the header")
    orders = []
    for name in header:
        match = re.fullmatch(r"p(\d+)", name)
        if match:
            orders.append(int(match.group(1)))
            if f"{name}_err" not in header:
                raise _refuse(path, f"column {name!r} has no error column {name + '_err'!r}")
        elif not (name in ("lo", "hi") or re.fullmatch(r"p\d+_err", name)):
            raise _refuse(path, f"unknown column {one_line(name)[:40]!r} (expected lo, hi, pN and pN_err)")
        elif name.endswith("_err") and name[:-4] not in header:
            raise _refuse(path, f"error column {name!r} has no value column {name[:-4]!r}")
    if not orders:
        raise _refuse(path, "no order columns (p0, p1, ... with p0_err, p1_err, ...)")
    return sorted(orders)


def _numbers(path: Path, rows: list[list[str]], header: list[str]) -> np.ndarray:
    table = np.empty((len(rows), len(header)))
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise _refuse(path, f"line {i + 2}: {len(row)} fields where the header has {len(header)}")
        for j, text in enumerate(row):
            try:
                value = float(text)
            except ValueError:
                raise _refuse(path, f"line {i + 2}, column {header[j]}: {one_line(text.strip())[:40]!r} is not a number") from None
            if not math.isfinite(value):
                raise _refuse(path, f"line {i + 2}, column {header[j]}: {text.strip()} is not finite")
            table[i, j] = value
    return table


def _check_bins(path: Path, lo: np.ndarray, hi: np.ndarray, support: tuple[float, float]) -> None:
    a, b = support
    empty = np.nonzero(~(hi > lo))[0]
    if empty.size:
        raise _refuse(path, f"the bin [{lo[empty[0]]:g}, {hi[empty[0]]:g}] is empty or reversed")
    order = np.nonzero(lo[1:] < hi[:-1])[0]
    if order.size:
        i = order[0]
        what = "overlap" if lo[i + 1] >= lo[i] else "are not sorted"
        raise _refuse(path, f"the bins [{lo[i]:g}, {hi[i]:g}] and [{lo[i + 1]:g}, {hi[i + 1]:g}] {what} (bins must increase without overlapping)")
    if lo[0] < a or hi[-1] > b:
        raise _refuse(path, f"the bins span [{lo[0]:g}, {hi[-1]:g}], beyond the support ({a:g}, {b:g})")


_YODA_KINDS = ("YODA_HISTO1D_V2", "YODA_HISTO1D_V3", "YODA_SCATTER2D_V2")


def _read_yoda(path: Path, text: str, support: tuple[float, float], digest: str) -> Histogram:
    r"""The histograms of a YODA text file (as Rivet writes it), one per order.

    Each object's path must end in ``/p<n>``, the order it holds: a ``Histo1D`` (YODA 1, ``_V2``,
    or YODA 2, ``_V3``) filled so that a bin's ``sumw`` is its integral of :math:`p^n` (average
    ``sumw``/width, error :math:`\sqrt{\texttt{sumw2}}`/width), or a ``Scatter2D`` of bin averages
    (the x errors are the half-widths; the y error is the mean of its two sides). All orders must
    share one binning.
    """
    blocks = re.findall(r"^BEGIN (\S+) (\S+)[^\n]*\n(.*?)^END \1[^\n]*$", text, flags=re.M | re.S)
    if not blocks:
        raise _refuse(path, "no YODA objects (BEGIN YODA_HISTO1D_V2 /path ... END YODA_HISTO1D_V2)")
    binning, values, errors = None, {}, {}
    for kind, name, body in blocks:
        match = re.search(r"/p(\d+)$", name)
        if kind not in _YODA_KINDS:
            raise _refuse(path, f"{one_line(name)[:60]}: {one_line(kind)[:40]} is not read (Histo1D or Scatter2D)")
        if not match:
            raise _refuse(path, f"{one_line(name)[:60]}: the object's path must end in /p<n>, the order it holds")
        n = int(match.group(1))
        if n in values:
            raise _refuse(path, f"two objects hold p{n}")
        lo, hi, value, error = _yoda_bins(path, name, kind, body)
        if binning is None:
            binning = (lo, hi)
            _check_bins(path, lo, hi, support)
        elif not (lo.size == binning[0].size and np.allclose(lo, binning[0], rtol=1e-12) and np.allclose(hi, binning[1], rtol=1e-12)):
            raise _refuse(path, f"{one_line(name)[:60]}: its bins differ from the first object's; every order must share one binning")
        values[n], errors[n] = value, _positive_errors(path, f"{one_line(name)[:60]}: the error", lo, hi, error)
    return Histogram(binning[0], binning[1], values, errors, str(path), digest)


def _yoda_numbers(path: Path, name: str, line: str, count: int) -> list[float]:
    fields = line.split()
    try:
        numbers = [float(v) for v in fields[:count]]
    except ValueError:
        raise _refuse(path, f"{one_line(name)[:60]}: {one_line(line)[:60]!r} is not a row of numbers") from None
    if len(numbers) < count or not all(math.isfinite(v) for v in numbers):
        raise _refuse(path, f"{one_line(name)[:60]}: {one_line(line)[:60]!r} needs {count} finite numbers")
    return numbers


def _yoda_bins(path: Path, name: str, kind: str, body: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    r"""Edges, bin averages and errors of one YODA object."""
    lines = [line.strip() for line in body.split("---", 1)[-1].splitlines()]
    rows = [line for line in lines if line and not line.startswith("#") and not line.startswith(("Total", "Underflow", "Overflow"))]
    if kind == "YODA_HISTO1D_V3":
        edges_line = next((line for line in lines if line.startswith("Edges(A1):")), None)
        if edges_line is None:
            raise _refuse(path, f"{one_line(name)[:60]}: no Edges(A1) line")
        try:
            edges = np.array([float(v) for v in edges_line.split(":", 1)[1].strip().strip("[]").split(",")])
        except ValueError:
            raise _refuse(path, f"{one_line(name)[:60]}: the Edges(A1) line is not a list of numbers") from None
        rows = [line for line in rows if not line.startswith("Edges")]
        table = np.array([_yoda_numbers(path, name, line, 2) for line in rows])
        if table.shape[0] != edges.size + 1:
            raise _refuse(path, f"{one_line(name)[:60]}: {table.shape[0]} rows for {edges.size - 1} bins (expected underflow, the bins, overflow)")
        table = table[1:-1]
        lo, hi = edges[:-1], edges[1:]
        width = hi - lo
        return lo, hi, table[:, 0] / width, np.sqrt(np.maximum(table[:, 1], 0.0)) / width
    if not rows:
        raise _refuse(path, f"{one_line(name)[:60]}: no bins")
    if kind == "YODA_HISTO1D_V2":
        table = np.array([_yoda_numbers(path, name, line, 4) for line in rows])
        lo, hi = table[:, 0], table[:, 1]
        width = np.where(hi > lo, hi - lo, 1.0)  # an empty bin is refused with the edges
        return lo, hi, table[:, 2] / width, np.sqrt(np.maximum(table[:, 3], 0.0)) / width
    table = np.array([_yoda_numbers(path, name, line, 6) for line in rows])
    lo, hi = table[:, 0] - table[:, 1], table[:, 0] + table[:, 2]
    # centre ± half-width rounds: adjacent bins that meet to 1e-9 share one edge
    touching = np.abs(hi[:-1] - lo[1:]) <= 1e-9 * np.maximum(np.abs(hi[:-1]), np.abs(lo[1:]))
    hi[:-1] = np.where(touching, lo[1:], hi[:-1])
    return lo, hi, table[:, 3], 0.5 * (table[:, 4] + table[:, 5])


# --- events ------------------------------------------------------------------------------

def _event_reader(path: Path, variable: str, order: int):
    r"""The reader of an event file and the columns to read: the variable, the weights, the group ids."""
    _open_checked(path)
    readers = {".npz": _NpzColumns, ".csv": _CsvColumns, ".parquet": _ParquetColumns}
    if path.suffix not in readers:
        raise _refuse(path, "events must be an .npz, .csv or .parquet file")
    reader = readers[path.suffix](path)
    columns = reader.names
    if variable not in columns:
        raise _refuse(path, f"no column {variable!r} (the spec's variable) among {', '.join(columns)[:80]}")
    orders = sorted(int(m.group(1)) for m in map(_WEIGHT.fullmatch, columns) if m)
    if not orders:
        raise _refuse(path, "no weight columns w0, w1, ... (each event's contribution to the integral of p^n)")
    if orders[-1] > order:
        raise _refuse(path, f"weights w{orders[-1]} beyond the target's order {order}")
    unknown = [c for c in columns if c not in (variable, "group") and not _WEIGHT.fullmatch(c)]
    if unknown:
        raise _refuse(path, f"unknown column {one_line(unknown[0])[:40]!r} (expected {variable}, w0 ... w{order} and optionally group)")
    names = [variable, *(f"w{n}" for n in orders)] + (["group"] if "group" in columns else [])
    return reader, names, orders


def _scanned(path: Path, variable: str, support: tuple[float, float], singular: str, order: int):
    r"""Pass one over an event file: its reader, the columns to read, and the :class:`_Scan` of every row."""
    reader, names, orders = _event_reader(path, variable, order)
    scan = _Scan(path, support, singular, orders)
    for chunk in reader.chunks(names):
        scan.add(chunk)
    scan.finish()
    return reader, names, scan


@dataclass(frozen=True, eq=False)  # arrays: compared by identity
class EventSample:
    r"""Events off the singular endpoint, in memory: where the weights' integrals :math:`E_p[g]` are estimated.

    Attributes:
        x: The events' values of the variable.
        weights: ``(len(x), N + 1)``: :math:`w_n` per event (zero for an order the file lacks),
            scaled so that :math:`\sum_i \sum_n \alpha^n w_{n,i}\, g(x_i)` estimates :math:`\int p\, g\, dx`.
        rows: How many such events the file holds (``len(x)`` when all were kept).
    """

    x: np.ndarray
    weights: np.ndarray
    rows: int


def event_sample(path: str | Path, variable: str, support: tuple[float, float], singular: str, order: int, limit: int = 1 << 20) -> EventSample:
    r"""The events off the singular endpoint (there every density that has no δ part vanishes), at most
    ``limit`` of them: beyond it every k-th, the weights scaled by the fraction kept (files list
    events in generation order, which is random).
    """
    path = Path(path)
    reader, names, scan = _scanned(path, variable, support, singular, order)
    orders = scan.orders
    stride = max(1, -(-scan.inside // limit))
    xs, ws, seen = [], [], 0
    for chunk in reader.chunks(names):
        inside = scan.distance(chunk[variable]) > 0
        index = np.nonzero(inside)[0]
        keep = index[(seen + np.arange(index.size)) % stride == 0]
        seen += index.size
        xs.append(chunk[variable][keep])
        ws.append(np.column_stack([chunk[f"w{n}"][keep] if n in orders else np.zeros(keep.size) for n in range(order + 1)]))
    x, weights = np.concatenate(xs), np.concatenate(ws)
    return EventSample(x, weights * (scan.inside / x.size), scan.inside)


def read_events(path: str | Path, variable: str, support: tuple[float, float], singular: str, order: int) -> Histogram:
    r"""Reads weighted events (``.npz``, ``.csv`` with a header, or ``.parquet``) and bins them.

    The file holds a column named after the spec's variable, weight columns ``w0`` … ``wN``
    (an event's contribution to :math:`\int p^n dx`; a missing ``wn`` means :math:`p^n` has no
    regular part) and optionally ``group``: ids, non-decreasing, shared by an event and its
    subtraction counter-events, whose weights then count as one random variable. Events at the
    singular endpoint carry the δ parts; they enter the totals, not the bins.

    The bins are log-spaced in the distance to the singular endpoint (10 per decade, from the
    closest event) or uniform across a regular support, then merged until each holds
    :data:`MIN_EVENTS` events. A bin's error is the spread of the weights,
    :math:`\sqrt{\sum w^2 - (\sum w)^2/N}` over the :math:`N` events (or groups).

    Raises:
        SpecError: In one line naming the file and the problem.
    """
    path = Path(path)
    reader, names, scan = _scanned(path, variable, support, singular, order)
    tally = _Tally(scan)
    for chunk in reader.chunks(names):
        tally.add(chunk)
    return tally.histogram(_sha256(path))


class _Scan:
    r"""Pass one: every row checked; how many events (and groups) there are, and the closest one to the singular end."""

    def __init__(self, path: Path, support: tuple[float, float], singular: str, orders: list[int]):
        self.path, self.support, self.singular, self.orders = path, support, singular, orders
        self.rows = self.inside = 0
        self.closest = math.inf
        self.last_group: float | None = None
        self.groups = 0

    def distance(self, x: np.ndarray) -> np.ndarray:
        a, b = self.support
        return b - x if self.singular == "upper" else x - a

    def add(self, chunk: dict[str, np.ndarray]) -> None:
        x = next(iter(chunk.values()))
        start = self.rows
        for name, values in chunk.items():
            bad = np.nonzero(~np.isfinite(values))[0]
            if bad.size:
                raise _refuse(self.path, f"row {start + bad[0] + 1}: {name} = {values[bad[0]]} is not a finite number")
        a, b = self.support
        outside = np.nonzero((x < a) | (x > b))[0]
        if outside.size:
            raise _refuse(self.path, f"row {start + outside[0] + 1}: x = {x[outside[0]]:g} lies outside the support [{a:g}, {b:g}]")
        if "group" in chunk:
            self._groups(chunk["group"], start)
        d = self.distance(x)
        inside = d[d > 0]
        self.inside += inside.size
        if inside.size:
            self.closest = min(self.closest, float(inside.min()))
        self.rows += x.size

    def _groups(self, group: np.ndarray, start: int) -> None:
        if np.any(group != np.round(group)):
            raise _refuse(self.path, "group ids must be integers")
        previous = np.concatenate([[self.last_group if self.last_group is not None else group[0]], group[:-1]])
        down = np.nonzero(group < previous)[0]
        if down.size:
            raise _refuse(self.path, f"row {start + down[0] + 1}: group ids must not decrease (an event and its counter-events are adjacent)")
        self.groups += int(np.count_nonzero(group != previous)) + (1 if self.last_group is None else 0)
        self.last_group = float(group[-1])

    def finish(self) -> None:
        if self.rows == 0:
            raise _refuse(self.path, "no events")
        if not math.isfinite(self.closest):
            raise _refuse(self.path, "every event lies at the endpoint: there is no regular part to bin")

    def edges(self) -> np.ndarray:
        r"""Fine bin edges in the distance to the singular end (or in x - a)."""
        a, b = self.support
        width = b - a
        if self.singular == "none":
            return np.linspace(0.0, width, UNIFORM_BINS + 1)
        decades = max(math.log10(width / self.closest), 1e-3)
        count = max(int(math.ceil(decades * PER_DECADE)), 1)
        edges = width * np.logspace(-decades, 0.0, count + 1)
        edges[0] = min(edges[0], self.closest)
        return edges


class _Tally:
    r"""Pass two: sums of weights and of squared (group) weights per fine bin."""

    def __init__(self, scan: _Scan):
        self.scan = scan
        self.fine = scan.edges()
        bins = self.fine.size - 1
        self.sums = {n: np.zeros(bins) for n in scan.orders}
        self.squares = {n: np.zeros(bins) for n in scan.orders}
        self.counts = np.zeros(bins, dtype=np.int64)
        self.totals = {n: [0.0, 0.0] for n in scan.orders}
        self.endpoint = {n: [0.0, 0.0] for n in scan.orders}
        self.carry: dict[str, np.ndarray] | None = None

    def add(self, chunk: dict[str, np.ndarray]) -> None:
        if "group" in chunk:
            # a group may continue in the next chunk: hold its rows back until it ends
            if self.carry is not None:
                chunk = {k: np.concatenate([self.carry[k], v]) for k, v in chunk.items()}
            last = chunk["group"][-1]
            tail = chunk["group"] == last
            self.carry = {k: v[tail] for k, v in chunk.items()}
            chunk = {k: v[~tail] for k, v in chunk.items()}
        self._add(chunk)

    def _add(self, chunk: dict[str, np.ndarray]) -> None:
        x = next(iter(chunk.values()))
        if x.size == 0:
            return
        d = self.scan.distance(x)
        at_end = d <= 0
        index = np.clip(np.searchsorted(self.fine, d, side="right") - 1, 0, self.fine.size - 2)
        binned = index[~at_end]
        self.counts += np.bincount(binned, minlength=self.counts.size)
        group = chunk.get("group")
        for n in self.scan.orders:
            w = chunk[f"w{n}"]
            self.sums[n] += np.bincount(binned, weights=w[~at_end], minlength=self.counts.size)
            self.endpoint[n][0] += float(w[at_end].sum())
            self.totals[n][0] += float(w.sum())
            if group is None:
                self.squares[n] += np.bincount(binned, weights=w[~at_end] ** 2, minlength=self.counts.size)
                self.endpoint[n][1] += float((w[at_end] ** 2).sum())
                self.totals[n][1] += float((w**2).sum())
            else:
                self._grouped(n, group, index, at_end, w)

    def _grouped(self, n: int, group: np.ndarray, index: np.ndarray, at_end: np.ndarray, w: np.ndarray) -> None:
        r"""Squares of the per-group sums, per bin, at the endpoint and in total."""
        starts = np.concatenate([[0], np.nonzero(group[1:] != group[:-1])[0] + 1])
        ids = np.repeat(np.arange(starts.size), np.diff(np.concatenate([starts, [group.size]])))
        bins = self.counts.size
        cell = np.where(at_end, bins, index) + (bins + 1) * ids
        keys, inverse = np.unique(cell, return_inverse=True)
        sums = np.bincount(inverse, weights=w)
        where = keys % (bins + 1)
        inner = where < bins
        self.squares[n] += np.bincount(where[inner], weights=sums[inner] ** 2, minlength=bins)
        self.endpoint[n][1] += float((sums[~inner] ** 2).sum())
        self.totals[n][1] += float((np.bincount(ids, weights=w) ** 2).sum())

    def histogram(self, sha256: str) -> Histogram:
        if self.carry is not None:
            self._add(self.carry)
            self.carry = None
        scan = self.scan
        events = scan.groups if scan.groups else scan.rows
        keep = _merge(self.counts, MIN_EVENTS)
        if len(keep) - 1 < 2:
            raise _refuse(scan.path, f"{int(self.counts.sum())} events off the endpoint: too few to bin (at least {2 * MIN_EVENTS} are needed)")
        lo_d, hi_d = self.fine[keep[:-1]], self.fine[keep[1:]]
        width = hi_d - lo_d
        a, b = scan.support
        # the bins in increasing distance; at an upper end that is decreasing x
        order = slice(None, None, -1) if scan.singular == "upper" else slice(None)
        lo, hi = ((b - hi_d), (b - lo_d)) if scan.singular == "upper" else (a + lo_d, a + hi_d)
        values, errors = {}, {}
        for n in scan.orders:
            s = np.add.reduceat(self.sums[n], keep[:-1])
            variance = np.maximum(np.add.reduceat(self.squares[n], keep[:-1]) - s**2 / events, 0.0)
            values[n], errors[n] = (s / width)[order], (np.sqrt(variance) / width)[order]
        counts = np.add.reduceat(self.counts, keep[:-1])[order]
        lo, hi = lo[order], hi[order]
        spread = lambda pair: (pair[0], math.sqrt(max(pair[1] - pair[0] ** 2 / events, 0.0)))
        return Histogram(lo, hi, values, errors, str(scan.path), sha256, counts,
                         {n: spread(v) for n, v in self.endpoint.items()}, {n: spread(v) for n, v in self.totals.items()}, events)


def _merge(counts: np.ndarray, minimum: int) -> list[int]:
    r"""Edges (indices into the fine edges) of merged bins that each hold at least ``minimum`` events.

    Empty fine bins at either end are dropped; a short last bin joins its neighbour.
    """
    filled = np.nonzero(counts)[0]
    if not filled.size:
        return [0]
    first, last = int(filled[0]), int(filled[-1]) + 1
    edges, held = [first], 0
    for i in range(first, last):
        held += int(counts[i])
        if held >= minimum:
            edges.append(i + 1)
            held = 0
    if held and len(edges) > 1:
        edges[-1] = last
    elif held:
        edges.append(last)
    return edges


class _CsvColumns:
    r"""A CSV event file's columns, read in chunks of rows."""

    def __init__(self, path: Path):
        self.path = path
        try:
            with open(path, encoding="utf-8", newline="") as stream:
                header = stream.readline()
        except UnicodeDecodeError:
            raise _refuse(path, "not a text CSV file (it is not UTF-8)") from None
        self.names = [name.strip() for name in header.strip().split(",")]
        if not header.strip() or len(set(self.names)) != len(self.names) or not all(self.names):
            raise _refuse(path, "the first line must be a header of distinct column names")

    def chunks(self, names: list[str]) -> Iterator[dict[str, np.ndarray]]:
        index = [self.names.index(n) for n in names]
        line = 1
        try:
            with open(self.path, encoding="utf-8", newline="") as stream:
                stream.readline()
                while True:
                    rows = stream.readlines(CHUNK * 16)
                    if not rows:
                        return
                    table = np.empty((len(rows), len(names)))
                    for i, row in enumerate(rows):
                        fields = row.split(",")
                        if len(fields) != len(self.names):
                            if not row.strip():
                                raise _refuse(self.path, f"line {line + i + 1}: an empty line")
                            raise _refuse(self.path, f"line {line + i + 1}: {len(fields)} fields where the header has {len(self.names)}")
                        try:
                            table[i] = [float(fields[j]) for j in index]
                        except ValueError:
                            raise _refuse(self.path, f"line {line + i + 1}: a field that is not a number") from None
                    line += len(rows)
                    yield {n: table[:, k] for k, n in enumerate(names)}
        except UnicodeDecodeError:
            raise _refuse(self.path, "not a text CSV file (it is not UTF-8)") from None


class _ParquetColumns:
    r"""A Parquet event file's columns, read in record batches (needs the optional ``pyarrow``)."""

    def __init__(self, path: Path):
        self.path = path
        try:
            import pyarrow.parquet as parquet
        except ImportError:
            raise _refuse(path, "reading Parquet events needs pyarrow (pip install 'renorm-flows[parquet]'), or give .npz or .csv") from None
        try:
            self.file = parquet.ParquetFile(path)
        except Exception as error:  # noqa: BLE001 - pyarrow raises several types for a bad file
            raise _refuse(path, f"not a readable Parquet file ({one_line(error)[:80]})") from None
        schema = self.file.schema_arrow
        self.names = list(schema.names)
        for field_ in schema:
            kind = str(field_.type)
            if not (kind.startswith(("double", "float", "int", "uint", "halffloat"))):
                raise _refuse(path, f"column {one_line(field_.name)[:40]!r} holds {kind}, not numbers")

    def chunks(self, names: list[str]) -> Iterator[dict[str, np.ndarray]]:
        for batch in self.file.iter_batches(batch_size=CHUNK, columns=names):
            chunk = {}
            for name in names:
                column = batch.column(name)
                if column.null_count:
                    raise _refuse(self.path, f"column {name!r} has missing values")
                chunk[name] = column.to_numpy(zero_copy_only=False).astype(float)
            yield chunk


class _NpzColumns:
    r"""An ``.npz`` event file's arrays, streamed from the archive in chunks (never loaded whole)."""

    def __init__(self, path: Path):
        self.path = path
        try:
            with zipfile.ZipFile(path) as archive:
                members = archive.namelist()
                self.shapes = {}
                for member in members:
                    if not member.endswith(".npy"):
                        raise _refuse(path, f"the archive holds {one_line(member)[:40]!r}, not a NumPy array")
                    with archive.open(member) as stream:
                        self.shapes[member[:-4]] = self._header(stream, member)
        except zipfile.BadZipFile:
            raise _refuse(path, "not an .npz archive (it is not a zip file)") from None
        except (ValueError, OSError, EOFError) as error:
            raise _refuse(path, f"not a readable .npz archive ({one_line(error)[:80]})") from None
        self.names = list(self.shapes)
        lengths = {shape[0][0] for shape in self.shapes.values()}
        if len(lengths) > 1:
            raise _refuse(path, f"the arrays differ in length ({', '.join(f'{k}: {v[0][0]}' for k, v in self.shapes.items())[:120]})")

    def _header(self, stream, member: str) -> tuple[tuple[int, ...], np.dtype]:
        shape, _, dtype = _array_header(stream)
        if len(shape) != 1:
            raise _refuse(self.path, f"array {member[:-4]!r} has shape {shape}; each column must be one-dimensional")
        if dtype.kind not in "fiu" or dtype.hasobject:
            raise _refuse(self.path, f"array {member[:-4]!r} holds {dtype}, not numbers")
        return shape, dtype

    def chunks(self, names: list[str]) -> Iterator[dict[str, np.ndarray]]:
        with zipfile.ZipFile(self.path) as archive:
            streams = {}
            for name in names:
                stream = archive.open(name + ".npy")
                _array_header(stream)
                streams[name] = stream
            length = self.shapes[names[0]][0][0]
            for start in range(0, length, CHUNK):
                rows = min(CHUNK, length - start)
                chunk = {}
                for name in names:
                    dtype = self.shapes[name][1]
                    data = streams[name].read(rows * dtype.itemsize)
                    if len(data) != rows * dtype.itemsize:
                        raise _refuse(self.path, f"array {name!r} is truncated")
                    chunk[name] = np.frombuffer(data, dtype=dtype).astype(float)
                yield chunk


def _array_header(stream) -> tuple[tuple[int, ...], bool, np.dtype]:
    r"""Shape, Fortran order and dtype of a ``.npy`` stream, leaving it at the data."""
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(stream)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(stream)
    raise ValueError(f".npy format version {version[0]}.{version[1]} is not read (save with numpy.savez)")
