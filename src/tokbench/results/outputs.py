"""Where a result goes, checked before the run, and kept somewhere safe if writing it still fails after it.

A measured result is never lost, never replaces another result, and never lands outside the folder the user
chose: a default file name comes from the config name made safe (`text.safe_filename`), and a name already taken
gets ``-2``, ``-3``... rather than replacing what is there.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from tokbench.errors import TokbenchError
from tokbench.fileio import atomic_write_text, cache_root, check_writable_folder, write_new_text
from tokbench.text import safe_filename

DEFAULT_RESULTS_DIR = Path("tokbench-results")
RESULT_SUFFIX = ".json"


class OutputLocationError(TokbenchError):
    """The result could not be written where asked; raised before the run, so nothing is measured in vain."""


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
        if path.is_dir() or output.endswith(("/", "\\")):
            target = ResultTarget(path, default_stem, exact=False)
        elif path.exists() or path.is_symlink():
            raise OutputLocationError(
                f"{output} already exists; a result is never replaced: choose another --output or remove that file"
            )
        else:
            name = path.name.removesuffix(RESULT_SUFFIX)
            target = ResultTarget(path.parent, name, exact=True)
    try:
        check_writable_folder(target.folder)
    except OSError as error:
        raise OutputLocationError(
            f"cannot write results into {target.folder}: {error.strerror or error}; "
            "choose a writable --output location"
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
    text = json.dumps(data, indent=1, allow_nan=False)
    errors: list[str] = []
    for folder in (cache_root() / "unsaved-results", Path(tempfile.gettempdir()) / "tokbench-unsaved-results"):
        try:
            return write_new_text(folder, stem, RESULT_SUFFIX, text), errors
        except OSError as error:
            errors.append(f"{folder}: {error.strerror or error}")
    return None, errors
