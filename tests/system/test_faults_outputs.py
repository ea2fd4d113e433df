"""Fault injection, the writing commands (issue 24): one output rule for every ``--output`` (run, tune, compare,
export, report, regressions), PNGs whose names look like math, and a crash that is never exit 1.

Real faults: a results store, the command's own input, device nodes (/dev/null, /dev/full), a symlink to
/dev/stdout, a read-only mount, a full tmpfs, a real result measured on the tiny model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from faults_support import one_line, result_data, sha, store_of, write_json

from tokbench.cli import main


def _protected(tmp_path: Path, real_results: tuple[Path, Path]) -> dict[str, Path]:
    """Every kind of path an --output must never replace, beside a store holding the two real results."""
    store = store_of(tmp_path / "store.db", *real_results)
    link = tmp_path / "to-stdout.md"
    link.symlink_to("/dev/stdout")
    target = tmp_path / "kept.txt"
    target.write_text("kept")
    (tmp_path / "link-to-kept.md").symlink_to(target)
    return {"store": store, "device": Path("/dev/null"), "full device": Path("/dev/full"), "link": link,
            "link to a file": tmp_path / "link-to-kept.md", "folder": tmp_path}  # fmt: skip


def _check_refused(code: int, err: str, *expected: str) -> None:
    assert code == 2, err
    line = one_line(err)
    assert any(text in line for text in expected), line


@pytest.mark.parametrize("command", ["compare", "export", "report", "regressions"])
def test_no_output_replaces_a_store_a_device_a_link_or_a_folder(
    command: str, real_results: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    protected = _protected(tmp_path, real_results)
    before = {name: sha(path) for name, path in protected.items() if path.is_file()}
    base, cont = map(str, real_results)
    for path in protected.values():
        args = {
            "compare": ["compare", base, cont, "--output", str(path), "--force"],
            "export": ["export", "--db", str(protected["store"]), "--output", str(path), "--force"],
            "report": ["report", base, "--output", str(path), "--force"],
            "regressions": ["regressions", "--db", str(protected["store"]), "--output", str(path), "--force"],
        }[command]
        _check_refused(
            main(args), capsys.readouterr().err, "is a database", "is a device", "is a symbolic link", "is a folder"
        )
    assert {name: sha(path) for name, path in protected.items() if path.is_file()} == before
    assert Path("/dev/null").is_char_device() and Path("/dev/full").is_char_device()
    assert (tmp_path / "to-stdout.md").is_symlink() and (tmp_path / "kept.txt").read_text() == "kept"
    # fix: results/outputs.check_output_file, used by every writing command


def test_compare_never_writes_over_its_own_input(
    real_results: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, cont = (Path(tmp_path / name) for name in ("a.json", "b.json"))
    base.write_bytes(real_results[0].read_bytes())
    cont.write_bytes(real_results[1].read_bytes())
    hard_link = tmp_path / "same-inode.md"
    os.link(cont, hard_link)
    for output in (base, cont, hard_link):
        code = main(["compare", str(base), str(cont), "--output", str(output), "--force"])
        _check_refused(code, capsys.readouterr().err, "is an input of this command")
    assert json.loads(base.read_text())["status"] == "ok" and json.loads(cont.read_text())["status"] == "ok"
    # the report's inputs and the store of an export are inputs too
    code = main(["report", str(base), str(cont), "--output", str(cont), "--force"])
    _check_refused(code, capsys.readouterr().err, "is an input of this command")
    # fix: check_output_file(inputs=...): the files a command reads are never replaced, --force or not


def test_an_existing_plain_file_is_replaced_only_with_force(
    real_results: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = tmp_path / "notes.md"
    notes.write_text("my notes")
    base, cont = map(str, real_results)
    code = main(["compare", base, cont, "--output", str(notes)])
    _check_refused(code, capsys.readouterr().err, "already exists; pass --force")
    assert notes.read_text() == "my notes"
    assert main(["compare", base, cont, "--output", str(notes), "--force", "--format", "markdown"]) == 0
    assert notes.read_text().startswith("### tokbench compare")
    db = store_of(tmp_path / "r.db", *real_results)
    assert main(["export", "--db", str(db), "--output", str(notes)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["export", "--db", str(db), "--output", str(notes), "--force"]) == 0
    assert len(json.loads(notes.read_text())) == 2
    assert main(["regressions", "--db", str(db), "--output", str(notes)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["regressions", "--db", str(db), "--output", str(notes), "--force", "--format", "json"]) == 0
    assert "workloads" in json.loads(notes.read_text())
    # an earlier report may be replaced without --force (it is the report's own output); nothing else may
    page = tmp_path / "r.html"
    assert main(["report", base, "--output", str(page)]) == 0
    assert main(["report", base, "--output", str(page)]) == 0
    assert main(["report", base, "--output", str(notes)]) == 2 and "not an HTML page" in capsys.readouterr().err
    # fix: check_output_file(force=..., replaceable=...): --force on compare, export, tune and report


def test_tune_output_is_checked_before_tuning(real_results: tuple[Path, Path], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    db = store_of(tmp_path / "store.db", *real_results)
    before = sha(db)
    assert main(["tune", "--model", "tiny-llama", "--device", "cpu", "--output", str(db)]) == 2
    assert "is a database" in one_line(capsys.readouterr().err) and sha(db) == before
    config = write_json(tmp_path / "tune.json", {"model": "tiny-llama", "device": "cpu"})
    assert main(["tune", "--config", str(config), "--output", str(config), "--force"]) == 2
    assert "is an input" in capsys.readouterr().err and result_data(config) == {"model": "tiny-llama", "device": "cpu"}
    # fix: cli.run.command_tune checks --output with check_output_file before loading the model


def test_read_only_and_full_disks_are_one_line(
    real_results: tuple[Path, Path], readonly_dir: Path, full_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, cont = map(str, real_results)
    for args in (
        ["compare", base, cont, "--output", str(readonly_dir / "c.md")],
        ["report", base, "--output", str(readonly_dir / "r.html")],
        ["report", base, "--output", str(full_dir / "r.html")],  # the 1.9 MiB page does not fit in 8 KiB
        ["compare", base, cont, "--format", "json", "--output", str(full_dir / "c.json")],
    ):
        code = main(args)
        captured = capsys.readouterr()
        _check_refused(code, captured.err, "Read-only file system", "No space left on device")
    assert not list(full_dir.iterdir()) and not list(readonly_dir.iterdir())  # no half-written file left
    # fix: check_output_file probes the folder first; write_output_text turns a failed write into one line


def test_png_names_that_look_like_math_are_drawn_as_text(
    real_results: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib", reason="--png needs the png extra (matplotlib)")
    data = result_data(real_results[0])
    for name in ("$x$", r"$\frac{", "cost $5 and $6", "$$"):
        data["config"]["name"] = name
        data.pop("config_hash", None)
        source = write_json(tmp_path / "math.json", data)
        output = tmp_path / "math.html"
        assert main(["report", str(source), "--output", str(output), "--png", str(tmp_path / "png")]) == 0, name
        assert output.is_file() and list((tmp_path / "png").glob("*.png"))
    capsys.readouterr()
    # fix: report.figures.write_pngs draws under matplotlib's text.parse_math = False


def test_a_png_folder_that_cannot_be_written_says_the_html_was(
    real_results: tuple[Path, Path], tmp_path: Path, readonly_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib", reason="--png needs the png extra (matplotlib)")
    output = tmp_path / "r.html"
    assert main(["report", str(real_results[0]), "--output", str(output), "--png", str(readonly_dir / "png")]) == 2
    line = one_line(capsys.readouterr().err)
    assert f"the HTML report was written to {output}" in line and "Read-only file system" in line
    assert output.is_file()
    # fix: report.html.write_report raises PngWriteError naming the page it wrote


def test_an_internal_error_exits_70_with_the_traceback_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import tokbench.cli.store as store_commands

    def broken(args: object) -> int:  # a bug injected into a real command: what main does with it is the test
        return 1 // 0

    monkeypatch.setattr(store_commands, "command_history", broken)
    monkeypatch.setenv("TOKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["history"]) == 70
    line = one_line(capsys.readouterr().err)
    assert "internal error (ZeroDivisionError: integer division or modulo by zero)" in line
    saved = list((tmp_path / "cache" / "crash-reports").glob("tokbench-crash-*.txt"))
    assert len(saved) == 1 and str(saved[0]) in line
    assert "Traceback" in saved[0].read_text() and "1 // 0" in saved[0].read_text()
    # fix: cli.main catches every unexpected exception: one line, the traceback in a file, exit 70 (EX_SOFTWARE)
