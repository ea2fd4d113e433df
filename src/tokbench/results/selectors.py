"""Which stored results a side of a comparison (or a history query) means.

A side is one of:

- a result JSON file: ``tokbench-results/run.json``
- a folder: every ``*.json`` result in it and below (profiler traces ``*.trace.json.gz`` are not results)
- a store and a selector: ``STORE.db:KEY=VALUE[,KEY=VALUE...]``, or ``KEY=VALUE[,...]`` with ``--db STORE``.
  Keys (all must hold): ``sweep=ID``, ``run=N`` or ``run=N-M`` (run ids), ``commit=PREFIX`` (git commit of the
  working directory), ``name=NAME`` (config name / label), ``model=M``, ``since=TIME`` and ``until=TIME``
  (start time, inclusive), ``latest`` (only the newest run of each workload).

Times are instants, parsed, never compared as text: ``2026-11-01``, ``2026-11-01T08:00``, ``2026-11-01 08:00``,
with seconds, fractions and an offset (``Z``, ``+02:00``) if wanted; without an offset a time is UTC, like the
stored start times. ``until`` covers the whole unit it names (a date: that day; a minute: that minute). A
time that does not parse is an error, never "everything". The colons inside a time never split
``STORE.db:since=2026-11-01T12:00``: the store is the part up to the first ``.db:`` (or ``.sqlite:``).

Only regular files are read, of bounded size (a FIFO or a link to ``/dev/zero`` in a results folder is skipped,
never waited on or read forever); a folder's JSON files that are not tokbench results are skipped.
Reading never writes: a store that does not exist is an error, never created.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from tokbench.errors import ResultFormatError, StoreError, UsageError
from tokbench.fileio import file_kind
from tokbench.schema.results import BenchmarkResult, read_result_data, result_from_data

SELECTOR_KEYS = ("sweep", "run", "commit", "name", "model", "since", "until", "latest")
_STORE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


class SelectorError(UsageError):
    """A comparison side or history selector that names nothing readable."""


@dataclass(frozen=True)
class SelectedRun:
    """One result a selector picked, with where it came from and when it ran."""

    result: BenchmarkResult
    origin: str  # "path/to/file.json" or "store.db run 12"
    run_id: int | None = None
    started_at: str = ""
    git_commit: str | None = None
    path: str = ""  # the file it was read from: the result JSON or the store


def parse_selector(text: str) -> dict[str, str]:
    """``sweep=ab12,since=2026-11-01`` → {"sweep": "ab12", "since": "2026-11-01"}; unknown keys are errors."""
    selector: dict[str, str] = {}
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        key, has_value, value = part.partition("=")
        key = key.strip()
        if key not in SELECTOR_KEYS:
            raise SelectorError(
                f"unknown selector key {key!r} in {text!r}; use {', '.join(SELECTOR_KEYS)} (e.g. sweep=ID,latest)"
            )
        if key != "latest" and not (has_value and value.strip()):
            raise SelectorError(f"selector key {key!r} needs a value ({key}=...)")
        selector[key] = value.strip()
        if key in ("since", "until"):
            parse_time_range(selector[key], key)  # refused now, not after the store is read
    if not selector:
        raise SelectorError(f"empty selector {text!r}; e.g. sweep=ID, run=3-7, commit=abc123")
    return selector


def _run_range(text: str) -> tuple[int, int]:
    first, dash, last = text.partition("-")
    try:
        low = int(first)
        high = int(last) if dash else low
    except ValueError as error:
        raise SelectorError(f"run={text!r} is not a run id or a range like 3-7") from error
    return low, high


_TIME = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[T ](?P<hour>\d{2})(?::(?P<minute>\d{2})(?::(?P<second>\d{2})(?P<fraction>\.\d{1,9})?)?)?)?"
    r"\s*(?P<offset>Z|[+-]\d{2}(?::?\d{2})?)?"
)
_RESOLUTION = (("fraction", timedelta(microseconds=1)), ("second", timedelta(seconds=1)),
               ("minute", timedelta(minutes=1)), ("hour", timedelta(hours=1)))  # fmt: skip


def parse_time_range(text: str, key: str = "since") -> tuple[datetime, datetime]:
    """The instants ``text`` covers, ``[start, end)``: a date covers its day, ``...T12:00`` its minute.

    A time without an offset is UTC (stored start times are); ``SelectorError`` for anything else.
    """
    match = _TIME.fullmatch(text.strip())
    try:
        if match is None:
            raise ValueError(text)
        normal = match["date"] + (f"T{text.strip()[len(match['date']) + 1 :]}" if match["hour"] else "")
        start = datetime.fromisoformat(normal.replace("Z", "+00:00").replace(" ", ""))
    except ValueError:
        written = f"{key}{' ' if key.startswith('-') else '='}{text!r}"
        raise SelectorError(
            f"{written} is not a time; write ISO 8601 such as 2026-11-27, 2026-11-27T08:00 or "
            "2026-11-27 08:00:30+02:00 (UTC unless an offset is given)"
        ) from None
    if start.tzinfo is None:
        start = start.replace(tzinfo=timezone.utc)
    step = next((size for part, size in _RESOLUTION if match[part]), timedelta(days=1))
    return start, start + step


def started_instant(started_at: str) -> datetime | None:
    """A stored ``started_at`` as an instant (UTC if it has no offset); None if it does not parse."""
    try:
        instant = datetime.fromisoformat(started_at.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=timezone.utc)


def time_filter(since: str | None, until: str | None) -> Callable[[str], bool]:
    """Whether a stored ``started_at`` lies in ``[since, until]`` (each the whole unit it names, inclusive)."""
    low = parse_time_range(since, "since")[0] if since else None
    high = parse_time_range(until, "until")[1] if until else None

    def inside(started_at: str) -> bool:
        instant = started_instant(started_at)
        if instant is None:
            return low is None and high is None  # a run without a readable start time is in no time range
        return (low is None or instant >= low) and (high is None or instant < high)

    return inside


def select_from_store(
    store_path: Path, selector: dict[str, str], skipped: list[str] | None = None
) -> list[SelectedRun]:
    """The store's runs this selector picks. A run that cannot be read (damaged, edited by hand) raises, naming it;
    with a ``skipped`` list it is left out instead and one line naming it and why is appended there."""
    from tokbench.results.store import ResultStore, UnreadableRunError

    if not store_path.is_file():
        raise SelectorError(f"no results store at {store_path}; pass an existing store (--db FILE or FILE.db:...)")
    with ResultStore(store_path, read_only=True) as store:  # reading never writes, nor creates a store
        runs = store.runs(model=selector.get("model"), sweep_id=selector.get("sweep"))
        if "run" in selector:
            low, high = _run_range(selector["run"])
            runs = [run for run in runs if low <= run.run_id <= high]
        if "commit" in selector:
            runs = [run for run in runs if (run.git_commit or "").startswith(selector["commit"])]
        if "name" in selector:
            runs = [run for run in runs if run.name == selector["name"]]
        if "since" in selector or "until" in selector:
            inside = time_filter(selector.get("since"), selector.get("until"))
            runs = [run for run in runs if inside(run.started_at)]
        picked = []
        for run in runs:
            try:
                result = store.result(run.run_id)
            except UnreadableRunError as error:
                if skipped is None:
                    raise
                skipped.append(f"run {run.run_id} left out: {error}")
                continue
            picked.append(
                SelectedRun(
                    result=result,
                    origin=f"{store_path} run {run.run_id}",
                    run_id=run.run_id,
                    started_at=run.started_at,
                    git_commit=run.git_commit,
                    path=str(store_path),
                )
            )
    if "latest" in selector:
        newest: dict[str, SelectedRun] = {}
        for run in picked:  # oldest first: a later run of the same workload replaces an earlier one
            newest[workload_key_of(run.result)] = run
        picked = sorted(newest.values(), key=lambda run: run.run_id or 0)
    return picked


def workload_key_of(result: BenchmarkResult, ignore: tuple[str, ...] = ()) -> str:
    """The result's workload key, with the device type the run really used (effective settings)."""
    config = result.config
    if ignore:
        from dataclasses import fields

        defaults = {f.name: f.default for f in fields(config)}
        config = config.replace(**{name: defaults[name] for name in ignore})
    return config.workload_key(device_type_of(result))


def device_type_of(result: BenchmarkResult) -> str | None:
    device = result.effective_settings.device
    return str(device).split(":")[0] if device else None


def _load_file(path: Path) -> BenchmarkResult:
    try:
        return result_from_data(read_result_data(path), str(path))
    except ResultFormatError as error:  # its message starts with the file's name
        raise SelectorError(str(error)) from error
    except OSError as error:
        raise SelectorError(f"{path} cannot be read: {error.strerror or error}") from error


def result_files(folder: Path) -> tuple[list[tuple[Path, dict]], list[Path]]:
    """The tokbench results in ``folder`` and below (with their JSON data), and the ``*.json`` files skipped:
    special files (FIFOs, devices, links to them), unreadable files and JSON that is not a result."""
    found: list[tuple[Path, dict]] = []
    skipped: list[Path] = []
    for path in sorted(folder.rglob("*.json")):
        if not path.is_file():  # a FIFO, a device, a link to one, a folder named *.json
            skipped.append(path)
            continue
        try:
            data = read_result_data(path)
        except (ResultFormatError, OSError):
            skipped.append(path)  # not JSON, too large, unreadable: not a result, and not ours to judge
            continue
        if isinstance(data, dict) and "schema_version" in data and "config" in data and "status" in data:
            found.append((path, data))
        else:
            skipped.append(path)
    return found, skipped


def _folder_runs(folder: Path) -> list[SelectedRun]:
    picked = []
    for file, data in result_files(folder)[0]:
        try:
            result = result_from_data(data, str(file))
        except ResultFormatError as error:
            raise SelectorError(str(error)) from error
        picked.append(SelectedRun(result=result, origin=str(file), started_at=result.started_at,
                                  git_commit=_commit(result), path=str(file)))  # fmt: skip
    if not picked:
        raise SelectorError(f"no tokbench result JSON in the folder {folder}")
    return picked


def split_store_selector(spec: str) -> tuple[str, str] | None:
    """``STORE.db:KEY=VALUE,...`` split after the store (the first ``.db:``, ``.sqlite:`` or ``.sqlite3:``), so
    a colon inside a time (``since=2026-11-01T12:00``) stays in the selector; None if ``spec`` has no store."""
    for match in re.finditer(":", spec):
        store = spec[: match.start()]
        if store and Path(store).suffix in _STORE_SUFFIXES:
            return store, spec[match.end() :]
    return None


def select(spec: str, db: str | None = None) -> list[SelectedRun]:
    """The results ``spec`` names (see the module docstring); an empty selection is an error."""
    path = Path(spec)
    if path.is_file() and path.suffix not in _STORE_SUFFIXES:
        result = _load_file(path)
        picked = [
            SelectedRun(result=result, origin=str(path), started_at=result.started_at, git_commit=_commit(result),
                        path=str(path))
        ]  # fmt: skip
    elif path.is_dir():
        picked = _folder_runs(path)
    elif path.is_file():  # a store on its own: every run in it
        picked = select_from_store(path, {"latest": ""})
    elif path.exists():
        raise SelectorError(f"{spec} is {file_kind(path)}, not a result file, a folder or a store")
    else:
        store_and_selector = split_store_selector(spec)
        if store_and_selector is not None:
            picked = select_from_store(Path(store_and_selector[0]), parse_selector(store_and_selector[1]))
        elif "=" in spec or spec.strip() == "latest":
            if db is None:
                raise SelectorError(f"{spec!r} is a store selector: name the store with --db FILE or FILE.db:{spec}")
            picked = select_from_store(Path(db), parse_selector(spec))
        else:
            raise SelectorError(
                f"{spec!r} is neither a result file, a folder, nor a store selector (STORE.db:sweep=ID, run=3-7, ...)"
            )
    if not picked:
        raise SelectorError(f"{spec!r} selects no stored result")
    return picked


def measurement_id(result: BenchmarkResult) -> str:
    """The hash of a result's whole content: copies of one result (a file copied, a store named twice,
    selectors that overlap) share it; two measurements never do, since each has its own timestamps."""
    payload = json.dumps(result.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def distinct_runs(runs: Sequence[SelectedRun]) -> tuple[list[SelectedRun], list[str]]:
    """``runs`` with copies of one measurement counted once (the first kept), and a note per measurement that
    had copies: three copies of one file are one process, not three."""
    first: dict[str, SelectedRun] = {}
    copies: dict[str, list[str]] = {}
    for run in runs:
        key = measurement_id(run.result)
        if key in first:
            copies.setdefault(key, [first[key].origin]).append(run.origin)
        else:
            first[key] = run
    notes = [
        f"{len(origins)} copies of one measurement counted once: {', '.join(origins[:3])}"
        + (f" and {len(origins) - 3} more" if len(origins) > 3 else "")
        for origins in copies.values()
    ]
    return list(first.values()), notes


def distinct_sides(
    baseline: Sequence[SelectedRun], contender: Sequence[SelectedRun]
) -> tuple[list[SelectedRun], list[SelectedRun], list[str]]:
    """Both sides of a comparison with copies counted once (and a note for each), or ``SelectorError`` when a
    measurement is on both sides: data compared with itself shows "no change" whatever happened."""
    base, base_notes = distinct_runs(baseline)
    cont, cont_notes = distinct_runs(contender)
    ours = {measurement_id(run.result): run.origin for run in base}
    shared = [(ours[key], run.origin) for run in cont if (key := measurement_id(run.result)) in ours]
    if shared:
        shown = "; ".join(f"{one} = {two}" for one, two in shared[:3]) + (" ..." if len(shared) > 3 else "")
        raise SelectorError(
            f"baseline and contender share {len(shared)} measurement(s) ({shown}); a comparison of data with "
            "itself can only say 'no change': select different runs for each side"
        )
    return base, cont, [f"baseline: {note}" for note in base_notes] + [f"contender: {note}" for note in cont_notes]


def store_path_of(spec: str) -> str | None:
    """The store a side's spec reads (``STORE.db`` or ``STORE.db:selector``), None for files and folders."""
    path = Path(spec)
    if path.suffix in _STORE_SUFFIXES and path.is_file():
        return spec
    split = split_store_selector(spec)  # the first ".db:": a colon inside a time is not the store's end
    return split[0] if split is not None else None


def _commit(result: BenchmarkResult) -> str | None:
    return result.environment.commit


__all__ = [
    "SELECTOR_KEYS",
    "SelectedRun",
    "SelectorError",
    "StoreError",
    "distinct_runs",
    "distinct_sides",
    "parse_selector",
    "parse_time_range",
    "result_files",
    "select",
    "split_store_selector",
    "time_filter",
]  # fmt: skip
