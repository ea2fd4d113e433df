"""Which stored results a side of a comparison (or a history query) means.

A side is one of:

- a result JSON file: ``tokbench-results/run.json``
- a folder: every ``*.json`` result in it and below (profiler traces ``*.trace.json.gz`` are not results)
- a store and a selector: ``STORE.db:KEY=VALUE[,KEY=VALUE...]``, or ``KEY=VALUE[,...]`` with ``--db STORE``.
  Keys (all must hold): ``sweep=ID``, ``run=N`` or ``run=N-M`` (run ids), ``commit=PREFIX`` (git commit of the
  working directory), ``name=NAME`` (config name / label), ``model=M``, ``since=ISO`` and ``until=ISO``
  (start time, inclusive; a date like ``2026-11-01`` works), ``latest`` (only the newest run of each
  workload).

Reading never writes: a store that does not exist is an error, never created.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tokbench.errors import ResultFormatError, StoreError, TokbenchError
from tokbench.schema.results import BenchmarkResult, load_result

SELECTOR_KEYS = ("sweep", "run", "commit", "name", "model", "since", "until", "latest")
_STORE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


class SelectorError(TokbenchError):
    """A comparison side or history selector that names nothing readable."""


@dataclass(frozen=True)
class SelectedRun:
    """One result a selector picked, with where it came from and when it ran."""

    result: BenchmarkResult
    origin: str  # "path/to/file.json" or "store.db run 12"
    run_id: int | None = None
    started_at: str = ""
    git_commit: str | None = None


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


def select_from_store(store_path: Path, selector: dict[str, str]) -> list[SelectedRun]:
    from tokbench.results.store import ResultStore

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
        if "since" in selector:
            runs = [run for run in runs if run.started_at >= selector["since"]]
        if "until" in selector:
            # a bare date means the whole day
            until = selector["until"] + ("T99" if len(selector["until"]) == 10 else "")
            runs = [run for run in runs if run.started_at <= until]
        picked = [
            SelectedRun(
                result=store.result(run.run_id),
                origin=f"{store_path} run {run.run_id}",
                run_id=run.run_id,
                started_at=run.started_at,
                git_commit=run.git_commit,
            )
            for run in runs
        ]
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
        return load_result(path)
    except (ResultFormatError, OSError, UnicodeDecodeError) as error:
        raise SelectorError(f"{path} is not a readable tokbench result: {error}") from error


def _result_files(folder: Path) -> list[Path]:
    files = []
    for path in sorted(folder.rglob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, OSError, UnicodeDecodeError):
            continue  # not JSON: not a result, and not ours to judge
        if isinstance(data, dict) and "schema_version" in data and "config" in data and "status" in data:
            files.append(path)
    return files


def select(spec: str, db: str | None = None) -> list[SelectedRun]:
    """The results ``spec`` names (see the module docstring); an empty selection is an error."""
    path = Path(spec)
    if path.is_file() and path.suffix not in _STORE_SUFFIXES:
        result = _load_file(path)
        picked = [
            SelectedRun(result=result, origin=str(path), started_at=result.started_at, git_commit=_commit(result))
        ]
    elif path.is_dir():
        picked = [
            SelectedRun(result=(result := _load_file(file)), origin=str(file), started_at=result.started_at,
                        git_commit=_commit(result))
            for file in _result_files(path)
        ]  # fmt: skip
        if not picked:
            raise SelectorError(f"no tokbench result JSON in the folder {path}")
    elif path.is_file():  # a store on its own: every run in it
        picked = select_from_store(path, {"latest": ""})
    else:
        store_text, colon, selector_text = spec.rpartition(":")
        if colon and store_text and Path(store_text).suffix in _STORE_SUFFIXES:
            picked = select_from_store(Path(store_text), parse_selector(selector_text))
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


def _commit(result: BenchmarkResult) -> str | None:
    return result.environment.commit


__all__ = ["SELECTOR_KEYS", "SelectedRun", "SelectorError", "StoreError", "parse_selector", "select"]
