"""Sweeps: a grid of runs as one study, and its results as the paper's tables.

A sweep is a base run config and a grid of values for run-config fields named by dotted keys
(`{"method": ["naive", "amst_full"], "skip.audio": [1, 2, 3, 5], "seed": [0, 1, 2]}`). `expand` makes one run
config per combination and validates every one before anything is queued: the first invalid combination is a
`SweepError` naming its cell and field. A method that does not skip ignores `skip.*`: its combinations that differ
only there are one run (shown with "-" for those keys), so naive is trained once per seed next to AMST's factors.

The results matrix has one row per cell (the grid's values except `seed`): mean, standard deviation and count of
each measure over its seeds, and, against a baseline cell, the paired difference by seed with a paired t-test and
a Wilcoxon signed-rank test (scipy); fewer than `MIN_PAIRS` paired seeds make the p-values meaningless, and the
row says so. Tables: a numeric CSV (every number its own column, significance in words), and a compact table
for the paper ("mean ± std" per measure, the best bold, Δ and p against the baseline) as Markdown or LaTeX.
"""

from __future__ import annotations

import copy
import csv
import html
import io
import itertools
import json
import math
import re
import statistics
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from pydantic import ValidationError

from amst_core.catalog import METHODS
from amst_core.config import RunConfig, format_validation_error
from amst_core.extras import require
from amst_core.vocab import BRANCH, HELPER, RunStatus, component

SEED = "seed"
MIN_PAIRS = 5  # below this many paired seeds a p-value says little (Wilcoxon's smallest two-sided p at n=4: 0.125)
MAX_RUNS = 1000
MEASURES = ("best_val_acc", "test_acc_at_best")
ALL_METHODS = "all"  # `method: [all]` in a grid: every registered method (`every_method`)
SKIPPED_KEY = "-"  # a grid key that does not apply to the cell's method (skip.* for naive)


class SweepError(ValueError):
    """A grid that cannot be run: which cell, which field, what is wrong."""

    def __init__(self, field: str | None, message: str, cell: Mapping[str, Any] | None = None):
        where = f"cell {format_cell(cell)}: " if cell else ""
        super().__init__(f"{where}{field + ': ' if field else ''}{message}")
        self.field, self.cell, self.message = field, dict(cell or {}), message


def format_cell(cell: Mapping[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (cell or {}).items())


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set a dotted field; `skip.<m>: auto` (one value of a grid of factors) means `skip: auto`."""
    if dotted.startswith("skip.") and value == "auto":
        dotted, value = "skip.auto", {}
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise SweepError(dotted, f"{key} is not a section of the run config")
        node = child
    node[keys[-1]] = copy.deepcopy(value)


def check_grid(grid: Mapping[str, Any]) -> dict[str, list[Any]]:
    if not isinstance(grid, Mapping) or not grid:
        raise SweepError("grid", "give at least one key with a list of values")
    out = {}
    for key, values in grid.items():
        if not isinstance(key, str) or not key or not all(key.split(".")):
            raise SweepError("grid", f"{key!r} is not a dotted run-config field")
        if not isinstance(values, list) or not values:
            raise SweepError(f"grid.{key}", "give a non-empty list of values")
        if len({repr(v) for v in values}) != len(values):
            raise SweepError(f"grid.{key}", "a value is listed twice")
        out[key] = list(values)
    size = math.prod(len(v) for v in out.values())
    if size > MAX_RUNS:
        raise SweepError("grid", f"{size} combinations; a sweep holds at most {MAX_RUNS} runs")
    return out


@dataclass(frozen=True)
class SweepRun:
    cell: dict[str, Any]  # this run's grid values (seed included); "-" where a key does not apply
    config: RunConfig

    @property
    def cell_key(self) -> tuple:
        """The cell without its seed: runs of one cell are the seeds of one row of the matrix."""
        return cell_key(self.cell)


def frozen(value: Any) -> Any:
    """A grid value as a dictionary key: lists and mappings (a grid over `skip` may hold them) as their JSON."""
    return json.dumps(value, sort_keys=True, default=str) if isinstance(value, list | dict) else value


def cell_key(cell: Mapping[str, Any]) -> tuple:
    """A cell's values without the seed, hashable: the seeds of one cell make one row of the matrix."""
    return tuple((k, frozen(v)) for k, v in cell.items() if k != SEED)


def applies(key: str, method: Any) -> bool:
    """skip.* means nothing to a method that does not skip."""
    skips = not isinstance(method, str) or method not in METHODS or METHODS[method].uses_skip
    return skips or key.split(".")[0] != "skip"


def every_method(base: Mapping[str, Any]) -> list[str]:
    """`method: [all]`: every registered method that trains the base config as it is, each with its own defaults.
    Left out: a method the base cannot run without more (unimodal's `method_params.modality`, PMR on three
    modalities); the base's own `method_params` and `fusion` stay with the base's method."""
    own = base.get("method")
    names = []
    for name in METHODS:
        data = {k: v for k, v in base.items() if name == own or k not in ("method_params", "fusion")}
        try:
            RunConfig.model_validate({**data, "method": name})
        except ValidationError:
            continue
        names.append(name)
    if not names:
        raise SweepError("grid.method", "no registered method trains this base config")
    return names


def expand(base: Mapping[str, Any], grid: Mapping[str, Any]) -> list[SweepRun]:
    """One validated run config per combination of the grid's values, duplicates (keys that do not apply) once."""
    everything = grid.get("method") in (ALL_METHODS, [ALL_METHODS])
    grid = check_grid({**grid, "method": every_method(base)} if everything else grid)
    runs: list[SweepRun] = []
    seen: set[tuple] = set()
    for values in itertools.product(*grid.values()):
        cell = dict(zip(grid, values, strict=True))
        method = cell.get("method", base.get("method"))
        shown = {k: (v if applies(k, method) else SKIPPED_KEY) for k, v in cell.items()}
        key = tuple((k, frozen(v)) for k, v in shown.items())
        if key in seen:
            continue
        seen.add(key)
        data = copy.deepcopy(dict(base))
        if everything and method != base.get("method"):  # the base's own parameters are its method's
            data.pop("method_params", None)
            data.pop("fusion", None)
        for name, value in cell.items():
            if applies(name, method):  # the run as it trains: skip keys of a method that does not skip left out
                set_dotted(data, name, value)
        try:
            config = RunConfig.model_validate(data)
        except ValidationError as err:
            first = format_validation_error(err).splitlines()[0]
            where, _, message = first.partition(": ")
            raise SweepError(where if message else None, message or first, cell) from None
        runs.append(SweepRun(shown, config))
    return runs


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class RunResult:
    """What the matrix needs of one finished run."""

    cell: dict[str, Any]
    measures: dict[str, float | None]  # best_val_acc, test_acc_at_best, helper:<m>, branch:<m>

    @property
    def seed(self) -> Any:
        return self.cell.get(SEED)

    @property
    def cell_key(self) -> tuple:
        return cell_key(self.cell)


def modality_measures(test_at_best: Mapping[str, Mapping[str, float]] | None) -> dict[str, float]:
    """helper:<m> and branch:<m> test accuracy at the best epoch from a run summary's `test_at_best` (AMST-FULL:
    its alternating module's, `alt_helper` / `alt_branch`)."""
    out: dict[str, float] = {}
    for kind in (HELPER, BRANCH):
        chosen = next((c for c in (kind, component(kind, "alt_")) if c in (test_at_best or {})), None)
        for modality, value in sorted(((test_at_best or {}).get(chosen) or {}).items()):
            out[f"{kind}:{modality}"] = value
    return out


@dataclass
class Stat:
    mean: float | None
    std: float | None  # sample standard deviation (n - 1); None for fewer than 2 values
    count: int

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Stat:
        got = [v for v in values if v is not None and math.isfinite(v)]
        return cls(statistics.fmean(got) if got else None, statistics.stdev(got) if len(got) > 1 else None,
                   len(got))


@dataclass
class Paired:
    """This cell minus the baseline, seed by seed (seeds both have)."""

    seeds: list[Any]
    differences: list[float]
    mean: float | None
    t_p: float | None  # paired t-test, two-sided
    wilcoxon_p: float | None  # Wilcoxon signed-rank, two-sided (exact for small n)
    meaningful: bool  # at least MIN_PAIRS pairs


def paired_test(a: Sequence[float], b: Sequence[float]) -> tuple[float | None, float | None]:
    """(paired t p-value, Wilcoxon signed-rank p-value) of a vs b, two-sided; None where undefined (fewer than 2
    pairs; every difference zero)."""
    stats = require("scipy.stats", "stats", "a sweep's paired tests")

    diffs = [x - y for x, y in zip(a, b, strict=True)]
    if len(diffs) < 2 or all(d == 0 for d in diffs):
        return None, None
    t_p = float(stats.ttest_rel(a, b).pvalue) if statistics.pstdev(diffs) > 0 else 0.0
    w_p = float(stats.wilcoxon(a, b).pvalue)
    return (t_p if math.isfinite(t_p) else None), (w_p if math.isfinite(w_p) else None)


@dataclass
class Row:
    cell: dict[str, Any]
    stats: dict[str, Stat]
    paired: dict[str, Paired] = field(default_factory=dict)


def matrix(results: Sequence[RunResult], baseline: Mapping[str, Any] | None = None,
           measures: Sequence[str] | None = None) -> list[Row]:
    """One row per cell, in the order cells first appear; `baseline` names a cell by some of its grid values (e.g.
    {"method": "naive"}): every other row is paired with it on the primary measures."""
    cells: dict[tuple, list[RunResult]] = {}
    for r in results:
        cells.setdefault(r.cell_key, []).append(r)
    names = list(measures or [*MEASURES, *sorted({k for r in results for k in r.measures if k not in MEASURES})])
    rows = [Row(dict(key), {m: Stat.of(r.measures.get(m) for r in runs) for m in names})
            for key, runs in cells.items()]
    if baseline:
        base_key = find_cell(list(cells), baseline)
        for row, (key, runs) in zip(rows, cells.items(), strict=True):
            if key == base_key:
                continue
            by_seed = paired_by(runs, cells[base_key], lambda r: r.seed)
            for m in MEASURES:
                pairs = [(r.seed, r.measures.get(m), b.measures.get(m)) for r, b in by_seed]
                pairs = [(s, x, y) for s, x, y in pairs if x is not None and y is not None]
                diffs = [x - y for _, x, y in pairs]
                t_p, w_p = paired_test([x for _, x, _ in pairs], [y for _, _, y in pairs])
                row.paired[m] = Paired([s for s, _, _ in pairs], diffs, statistics.fmean(diffs) if diffs else None,
                                       t_p, w_p, len(pairs) >= MIN_PAIRS)
    return rows


# ---------------------------------------------------------------- AMST against a baseline


T = TypeVar("T")


def paired_by(items: Iterable[T], baselines: Sequence[T], key: Callable[[T], Hashable]) -> list[tuple[T, T]]:
    """Each item with the first of `baselines` that has its key (a sweep's cell by seed; Compare's AMST runs by
    dataset and seed); an item without one is left out."""
    first: dict[Hashable, T] = {}
    for b in baselines:
        first.setdefault(key(b), b)
    return [(item, first[key(item)]) for item in items if key(item) in first]


class RunFacts(Protocol):
    """What pairing reads of a run (a store row, or the API's run as attributes)."""

    id: str
    method: str
    dataset: str
    seed: int
    status: str


def is_amst(method: str) -> bool:
    """An AMST method is one that skips (METHODS' uses_skip): what Compare sets against a baseline."""
    return method in METHODS and METHODS[method].uses_skip


def pair_baselines(runs: Sequence[RunFacts], candidates: Sequence[RunFacts],
                   baseline_method: str = "naive") -> list[tuple[RunFacts, RunFacts]]:
    """Each AMST run of `runs` with a `baseline_method` run of the same dataset and seed: one among `runs` first,
    else the newest succeeded one among `candidates` (newest first), else the newest of any status."""
    chosen = [r for r in runs if r.method == baseline_method]
    ids = {r.id for r in chosen}
    pool = chosen + sorted((r for r in candidates if r.method == baseline_method and r.id not in ids),
                           key=lambda r: r.status != RunStatus.succeeded)  # stable: newest first in each group
    return paired_by([r for r in runs if is_amst(r.method)], pool, lambda r: (r.dataset, r.seed))


def find_cell(keys: list[tuple], wanted: Mapping[str, Any]) -> tuple:
    matches = [k for k in keys if all(dict(k).get(name) == frozen(value) for name, value in wanted.items())]
    if len(matches) != 1:
        found = "no cell" if not matches else f"{len(matches)} cells"
        raise SweepError("baseline", f"{format_cell(wanted)} matches {found}; name one cell by its grid values")
    return matches[0]


# ---------------------------------------------------------------- tables

# Every format a table is asked for by, and what it is: `md` and `tex` are the names the first API used.
TABLE_FORMATS = {"csv": "csv", "md": "markdown", "markdown": "markdown", "tex": "latex", "latex": "latex"}
MEASURE_LABELS = {"best_val_acc": "val acc", "test_acc_at_best": "test acc"}
SIGNIFICANCE_LEVEL = 0.05  # of the paired t-test (Wilcoxon cannot go below 0.0625 with 5 pairs)
DIGITS = 3  # of a mean, a spread and a difference in the compact tables: what a paper prints
NO_VALUE = "-"
FEW_SEEDS_MARK = "†"


@dataclass(frozen=True)
class Cell:
    """A compact table's cell: its text, and whether it is the best of its column."""

    text: str
    bold: bool = False


def grid_keys(rows: Sequence[Row]) -> list[str]:
    return list(rows[0].cell) if rows else []


def measure_names(rows: Sequence[Row], measures: Sequence[str] | None = None) -> list[str]:
    return list(measures or (rows[0].stats if rows else []))


def measure_label(name: str) -> str:
    """`best_val_acc` -> "val acc", `helper:audio` -> "helper audio"."""
    return MEASURE_LABELS.get(name) or name.replace(":", " ")


def baseline_row(rows: Sequence[Row]) -> Row | None:
    """The baseline cell's row: matrix() pairs every row but the baseline's."""
    return next((r for r in rows if not r.paired), None) if any(r.paired for r in rows) else None


def significance(paired: Paired | None) -> str:
    """In words, so that the CSV's p-values stay numbers: the baseline itself, too few seeds to say, or whether
    the paired t-test's p is below SIGNIFICANCE_LEVEL."""
    if paired is None:
        return "baseline"
    if not paired.seeds:
        return "no paired seeds"
    if not paired.meaningful:
        return "too few seeds"
    return "significant" if paired.t_p is not None and paired.t_p < SIGNIFICANCE_LEVEL else "not significant"


def numeric_table(rows: Sequence[Row], measures: Sequence[str] | None = None) -> tuple[list[str], list[list[Any]]]:
    """Every number of the matrix, one column each (for a spreadsheet or pandas): the cell's grid values, per
    measure its mean, std and n, and against the baseline per primary measure the mean paired difference, both
    p-values, the number of paired seeds and the significance in words. None where a value is absent."""
    keys, names = grid_keys(rows), measure_names(rows, measures)
    paired = any(r.paired for r in rows)
    header = [*keys, *(f"{m} {part}" for m in names for part in ("mean", "std", "n"))]
    if paired:
        header += [f"{m} {part}" for m in MEASURES for part in ("diff", "t p", "wilcoxon p", "pairs", "significance")]
    body = []
    for r in rows:
        line: list[Any] = [r.cell[k] for k in keys]
        for m in names:
            line += [r.stats[m].mean, r.stats[m].std, r.stats[m].count]
        if paired:
            line += [x for m in MEASURES for x in paired_numbers(r.paired.get(m))]
        body.append(line)
    return header, body


def paired_numbers(paired: Paired | None) -> list[Any]:
    """diff, t p, wilcoxon p, pairs and significance of one primary measure (the baseline's row: none)."""
    if paired is None:
        return [None, None, None, None, significance(paired)]
    return [paired.mean, paired.t_p, paired.wilcoxon_p, len(paired.seeds), significance(paired)]


def mean_std(stat: Stat, seeds: int) -> str:
    """"0.605 ± 0.064"; the count too where it differs from the row's seeds (a measure some runs lack)."""
    if stat.mean is None:
        return NO_VALUE
    text = f"{stat.mean:.{DIGITS}f}" + (f" ± {stat.std:.{DIGITS}f}" if stat.std is not None else "")
    return text if stat.count == seeds else f"{text} (n={stat.count})"


def best_means(rows: Sequence[Row], measure: str) -> set[int]:
    """Which rows hold the column's best mean as printed (every measure is an accuracy: higher is better); none
    when fewer than two rows have one, as there is nothing to compare."""
    shown = {i: round(r.stats[measure].mean, DIGITS) for i, r in enumerate(rows) if r.stats[measure].mean is not None}
    return {i for i, v in shown.items() if v == max(shown.values())} if len(shown) > 1 else set()


def p_text(value: float | None) -> str:
    return NO_VALUE if value is None else "<0.001" if value < 0.001 else f"{value:.{DIGITS}f}"


def paired_cells(paired: Paired | None) -> list[Cell]:
    """Δ and p of one primary measure: "baseline" in the baseline's row; p marked † from too few seeds."""
    if paired is None:
        return [Cell("baseline"), Cell(NO_VALUE)]
    diff = NO_VALUE if paired.mean is None else f"{paired.mean:+.{DIGITS}f}"
    mark = FEW_SEEDS_MARK if paired.seeds and not paired.meaningful else ""
    return [Cell(diff), Cell(p_text(paired.t_p) + mark)]


def compact_table(rows: Sequence[Row], measures: Sequence[str] | None = None) -> tuple[list[str], list[list[Cell]]]:
    """The paper's table: one row per cell with its grid values and seed count, "mean ± std" per measure (the
    best of each column bold), and against the baseline, per primary measure, the mean paired difference (Δ) and
    the paired t-test's p."""
    keys, names = grid_keys(rows), measure_names(rows, measures)
    paired = any(r.paired for r in rows)
    header = [*keys, "n", *map(measure_label, names)]
    if paired:
        header += [part.format(measure_label(m)) for m in MEASURES for part in ("Δ {}", "p ({})")]
    best = {m: best_means(rows, m) for m in names}
    body = []
    for i, r in enumerate(rows):
        seeds = max((s.count for s in r.stats.values()), default=0)
        line = [Cell(str(r.cell[k])) for k in keys] + [Cell(str(seeds))]
        line += [Cell(mean_std(r.stats[m], seeds), i in best[m]) for m in names]
        if paired:
            line += [c for m in MEASURES for c in paired_cells(r.paired.get(m))]
        body.append(line)
    return header, body


def table_notes(rows: Sequence[Row]) -> list[str]:
    """What the compact table's marks mean, written under it (Markdown) or above it (LaTeX, as comments)."""
    notes = [f"Mean ± standard deviation over seeds (n runs), {DIGITS} decimals; bold: the best mean of its column. "
             "val acc: the fused prediction's best validation accuracy; test acc: the test accuracy at that epoch."]
    base = baseline_row(rows)
    if base is not None:
        notes.append(f"Δ: the mean difference to the baseline cell ({format_cell(base.cell)}), paired by seed; "
                     "p: paired t-test, two-sided (the Wilcoxon signed-rank p is in the CSV).")
    if any(p.seeds and not p.meaningful for r in rows for p in r.paired.values()):
        notes.append(f"{FEW_SEEDS_MARK} fewer than {MIN_PAIRS} paired seeds: the p-value says little.")
    return notes


def render_table(rows: Sequence[Row], fmt: str, warnings: Sequence[str] = ()) -> str:
    """The matrix in one of TABLE_FORMATS: the numeric CSV, or the compact table as Markdown or LaTeX, whose notes
    start with `warnings` (how its runs differ in code, environment or data: amst_core.provenance.differences)."""
    kind = TABLE_FORMATS[fmt]
    if kind == "csv":
        return to_csv(*numeric_table(rows))
    header, body = compact_table(rows)
    notes = [*(f"Warning: the runs' {line}." for line in warnings), *table_notes(rows)]
    if kind == "markdown":
        return to_markdown(header, body, notes)
    return to_latex(header, body, notes, labels=len(grid_keys(rows)))


def csv_number(value: Any) -> str:
    """A value as the CSV writes it: None empty, a number in full, text as csv_cell makes it safe."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.10g}"  # all a measure holds, without binary noise (0.05, not 0.050000000000000044)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return csv_cell(str(value))


# A cell a spreadsheet would run as a formula (OWASP, CSV injection): one that starts with = + - @, a tab or a
# carriage return. Prefixed with ' (shown as text); a plain number such as -0.5 or +3 stays a number, and "-"
# (no value) stays.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def csv_cell(text: str) -> str:
    """A cell as text a spreadsheet shows, never runs; a lone carriage return (which the writer would not quote,
    and a reader takes for the end of the row) as a newline."""
    plain = text == SKIPPED_KEY or NUMBER.match(text)  # "-": no value, as in the other tables
    text = "'" + text if text.startswith(FORMULA_START) and not plain else text
    return text.replace("\r\n", "\n").replace("\r", "\n")


def to_csv(header: list[str], body: Sequence[Sequence[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows([[csv_number(c) for c in row] for row in [header, *body]])
    return out.getvalue()


# In a Markdown cell: HTML is written as text (a renderer passes tags through), a link cannot form (a
# `javascript:` target), a pipe cannot end the cell (nor a backslash escape the pipe that does), code spans
# cannot open, and a line break cannot end the row. Emphasis stays (the table's bold is ours).
MARKDOWN_SPECIAL = re.compile(r"([\\`\[\]|])")


# A '<' before a digit opens no tag (CommonMark: a tag starts with a letter, '/', '!' or '?'): "<0.001" stays.
LESS_THAN_NUMBER = re.compile(r"&lt;(?=[\d.])")


def markdown_cell(text: str) -> str:
    flat = " ".join(text.splitlines())
    return MARKDOWN_SPECIAL.sub(r"\\\1", LESS_THAN_NUMBER.sub("<", html.escape(flat, quote=False)))


def markdown_text(cell: str | Cell) -> str:
    if isinstance(cell, str):
        return markdown_cell(cell)
    return f"**{markdown_cell(cell.text)}**" if cell.bold else markdown_cell(cell.text)


def to_markdown(header: list[str], body: Sequence[Sequence[str | Cell]], notes: Sequence[str] = ()) -> str:
    def line(cells: Sequence[str | Cell]) -> str:
        return "| " + " | ".join(markdown_text(c) for c in cells) + " |"

    table = [line(header), "|" + "|".join("---" for _ in header) + "|", *map(line, body)]
    return "\n".join(table + [f"\n{markdown_cell(n)}" for n in notes]) + "\n"


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                 # the compact table's own signs, as math (no inputenc needed)
                 "±": r"$\pm$", "Δ": r"$\Delta$", "†": r"$^\dagger$", "<": r"$<$", ">": r"$>$",
                 "|": r"\textbar{}"}


def latex_escape(text: str) -> str:
    """Every character TeX gives a meaning to, as text; a blank line would end the tabular's paragraph."""
    return "".join(LATEX_SPECIAL.get(c, c) for c in " ".join(text.splitlines()))


def latex_text(cell: str | Cell) -> str:
    if isinstance(cell, str):
        return latex_escape(cell)
    return f"\\textbf{{{latex_escape(cell.text)}}}" if cell.bold else latex_escape(cell.text)


def to_latex(header: list[str], body: Sequence[Sequence[str | Cell]], notes: Sequence[str] = (),
             labels: int = 1) -> str:
    """A booktabs tabular (\\usepackage{booktabs}): `labels` left-aligned columns, then numbers right-aligned;
    the notes as comments above it, for the caption."""
    spec = "l" * min(labels, len(header)) + "r" * max(0, len(header) - labels)
    lines = [f"% {' '.join(n.splitlines())}" for n in notes]
    lines += [f"\\begin{{tabular}}{{{spec or 'l'}}}", "\\toprule",
              " & ".join(latex_escape(h) for h in header) + r" \\", "\\midrule"]
    lines += [" & ".join(latex_text(c) for c in row) + r" \\" for row in body]
    return "\n".join([*lines, "\\bottomrule", "\\end{tabular}"]) + "\n"
