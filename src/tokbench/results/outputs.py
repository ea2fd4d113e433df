"""Where a command writes: one rule for every ``--output`` (run, tune, compare, export, report), checked before
the work, and a result kept somewhere safe if writing it still fails after it.

The rule (``check_output_file``): never write through a symbolic link, never replace a results store or any
other SQLite database, a file this command reads (an input), a folder or a special file (a device, a FIFO);
replace an existing plain file only when the user said so (``--force``, or a command's own earlier output such
as an HTML report); and find a read-only or full disk before the work, in one line. ``write_output_text`` then
writes atomically, and a disk that fills meanwhile is one line too, with nothing replaced.

A measured result is never lost, never replaces another result, and never lands outside the folder the user
chose: a default file name comes from the config name made safe (`text.safe_filename`), and a name already taken
gets ``-2``, ``-3``... rather than replacing what is there.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from tokbench.errors import UsageError
from tokbench.fileio import atomic_write_text, check_writable_folder, file_kind, keep_text_somewhere, write_new_text
from tokbench.text import safe_filename

DEFAULT_RESULTS_DIR = Path("tokbench-results")
RESULT_SUFFIX = ".json"


class OutputLocationError(UsageError):
    """The output cannot (or must not) be written where asked; raised before the work, so nothing is done in vain."""


FORCE_FIX = "pass --force to replace it, or choose another --output"
_SQLITE_HEADER = b"SQLite format 3\x00"


def check_output_file(
    output: str | Path,
    *,
    inputs: Iterable[str | Path] = (),
    force: bool = False,
    replaceable: Callable[[Path], bool] | None = None,
    option: str = "--output",
    exists_fix: str = FORCE_FIX,
) -> Path:
    """The path ``output`` names, if the output rule lets this command write it; else ``OutputLocationError``.

    ``inputs``: the files this command reads (never replaced, whatever ``force`` says). ``replaceable``: an
    existing file this command may replace without ``force`` (e.g. its own earlier output).
    """
    path = Path(output).expanduser()
    if path.is_symlink():
        raise OutputLocationError(
            f"{option} {output} is a symbolic link (to {os.readlink(path)}); tokbench never writes through a "
            "link: pass the real path"
        )
    if path.exists():
        _check_existing(path, output, inputs, force, replaceable, option, exists_fix)
    try:
        check_writable_folder(path.parent)
    except OSError as error:
        raise OutputLocationError(
            f"cannot write {option} {output}: {error.strerror or error} ({path.parent}); choose a writable location"
        ) from error
    return path


def _check_existing(
    path: Path,
    output: str | Path,
    inputs: Iterable[str | Path],
    force: bool,
    replaceable: Callable[[Path], bool] | None,
    option: str,
    exists_fix: str,
) -> None:
    kind = file_kind(path)
    if kind == "a folder":
        raise OutputLocationError(f"{option} {output} is a folder; pass a file name such as {path / 'out'}")
    if kind != "a file":
        raise OutputLocationError(f"{option} {output} is {kind}; tokbench writes regular files only: pass a file name")
    if _is_database(path):
        raise OutputLocationError(
            f"{option} {output} is a database (a results store?); tokbench never replaces one: choose another file"
        )
    for source in inputs:
        if _same_file(path, Path(source)):
            raise OutputLocationError(
                f"{option} {output} is an input of this command; writing it would destroy what is read: "
                "choose another file"
            )
    if not force and not (replaceable is not None and replaceable(path)):
        raise OutputLocationError(f"{option} {output} already exists; {exists_fix}")


def _is_database(path: Path) -> bool:
    try:
        with path.open("rb") as stream:
            return stream.read(len(_SQLITE_HEADER)) == _SQLITE_HEADER
    except OSError:
        return False


def _same_file(one: Path, two: Path) -> bool:
    try:
        return one.samefile(two)
    except OSError:
        return False


def write_output_text(path: Path, text: str, *, option: str = "--output") -> Path:
    """Write ``text`` to a path ``check_output_file`` allowed, atomically: a full disk leaves what was there."""
    try:
        return atomic_write_text(path, text)
    except OSError as error:
        raise OutputLocationError(
            f"could not write {option} {path}: {error.strerror or error}; nothing there was changed"
        ) from error


@dataclass(frozen=True)
class ResultTarget:
    """Where a run's result will be written: one exact path (``--output FILE``) or a folder + a free name."""

    folder: Path
    stem: str
    exact: bool  # True: the user named the file; it must not exist

    @property
    def planned_path(self) -> Path:
        return self.folder / f"{self.stem}{RESULT_SUFFIX}"


def plan_result_target(output: str | None, config_name: str, now: datetime | None = None) -> ResultTarget:
    """Check the output location now, before minutes of measuring; raise ``OutputLocationError`` if unusable.

    ``output`` may be a file path (it must not exist: a result is never replaced), an existing folder or one
    written with a trailing ``/`` (the result gets a default name inside), or None (``tokbench-results/``).
    """
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    default_stem = f"{safe_filename(config_name)}-{stamp}"
    if output is None:
        target = ResultTarget(DEFAULT_RESULTS_DIR, default_stem, exact=False)
    else:
        path = Path(output).expanduser()
        if (path.is_dir() and not path.is_symlink()) or output.endswith(("/", "\\")):
            target = ResultTarget(path, default_stem, exact=False)
        else:
            fix = "a result is never replaced: choose another --output or remove that file"
            check_output_file(path, exists_fix=fix)
            name = path.name.removesuffix(RESULT_SUFFIX)
            target = ResultTarget(path.parent, name, exact=True)
    try:
        check_writable_folder(target.folder)
    except OSError as error:
        raise OutputLocationError(
            f"cannot write results into {target.folder}: {error.strerror or error}; choose a writable --output location"
        ) from error
    return target


def write_result_json(data: dict, target: ResultTarget) -> Path:
    """Write the result where planned; a name taken meanwhile gets a suffix rather than being replaced."""
    text = json.dumps(data, indent=1, allow_nan=False)
    if target.exact:
        try:
            return atomic_write_text(target.planned_path, text, replace=False)
        except FileExistsError:
            pass  # another process wrote that name while we measured: keep both
    return write_new_text(target.folder, target.stem, RESULT_SUFFIX, text)


def keep_somewhere_safe(data: dict, stem: str) -> tuple[Path | None, list[str]]:
    """After the planned write failed: the result into the first fallback folder that takes it.

    Returns the path written (or None) and the errors met on the way, for the message.
    """
    return keep_text_somewhere("unsaved-results", stem, RESULT_SUFFIX, json.dumps(data, indent=1, allow_nan=False))
