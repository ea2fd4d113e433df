"""Fault injection: every failure path ends in a clear one-line message and a kept result (issue 17).

Issue 24's families have their own modules: test_faults_outputs (the output rule, PNGs, exit 70),
test_faults_options (bounded numbers), test_faults_inputs (hand-edited results, special files, messages),
test_faults_escapes (terminals and HTML), test_faults_sweeps (alias bombs, plans, the sweep lock, a killed
writer), test_faults_selectors (time selectors, duplicates), test_faults_ray (the cluster),
test_faults_environment (HOME, caches, the API); faults_support holds what they share.

Real faults where the fault needs one: a small tmpfs that fills up, a read-only mount, a store file with
damaged pages, another application's SQLite file, real `tokbench` commands in this process or a child.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from faults_support import tmpfs

from tokbench.cli import main
from tokbench.config import BenchmarkConfig
from tokbench.errors import ConfigError, StoreError
from tokbench.fileio import write_new_text
from tokbench.quant.tune.cache import TuningCache, TuningCacheWarning
from tokbench.report.terminal import make_console, print_result
from tokbench.results.store import ResultStore
from tokbench.sweep.plan import SweepSpec
from tokbench.sweep.runner import _skipped_result
from tokbench.text import safe_filename, spreadsheet_safe, terminal_safe

FAST = ["--model", "tiny-llama", "--sequence-length", "8", "--new-tokens", "3", "--warmup-iterations", "1",
        "--measurement-iterations", "2", "--no-monitor", "--no-progress", "--device", "cpu"]  # fmt: skip
EVIL = "\x1b]0;pwned\x07\x1b[2J=HYPERLINK(\"http://x\")\u202e"


@pytest.fixture
def store_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 256 KiB filesystem: room for a new store, then filled up."""
    yield from tmpfs(tmp_path / "tmpfs-256k", "size=256k", "the fault needs a real full filesystem")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _store_with(path: Path, *names: str) -> None:
    with ResultStore(path) as store:
        for name in names:
            config = BenchmarkConfig(name=name, device="cpu")
            store.add(_skipped_result(config, f"reason of {name}", "inline", {"python": "3"}))


# --- results are never lost ---------------------------------------------------------------------------


def test_output_onto_an_existing_folder_writes_inside_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    assert main(["run", *FAST, "--output", str(folder)]) == 0
    written = list(folder.glob("*.json"))
    assert len(written) == 1 and json.loads(written[0].read_text())["status"] == "ok"
    assert f"result written to {written[0]}" in capsys.readouterr().out


def test_output_onto_an_existing_file_is_refused_before_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: E501
    existing = tmp_path / "kept.json"
    existing.write_text('{"precious": true}')
    assert main(["run", *FAST, "--output", str(existing)]) == 2
    error = capsys.readouterr().err
    assert "already exists; a result is never replaced" in error and error.count("\n") == 1
    assert json.loads(existing.read_text()) == {"precious": True}


def test_output_on_a_read_only_filesystem_is_refused_before_running(
    readonly_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", *FAST, "--output", str(readonly_dir / "r.json")]) == 2
    captured = capsys.readouterr()
    assert "Read-only file system" in captured.err and "TTFT" not in captured.out


def test_full_disk_after_the_run_prints_the_table_and_keeps_the_result(
    full_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["run", *FAST, "--output", str(full_dir / "r.json")]) == 4
    captured = capsys.readouterr()
    assert "TTFT" in captured.out  # the table is printed whatever happens to the file
    kept = list((tmp_path / "cache" / "unsaved-results").glob("*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["status"] == "ok"
    assert f"kept it in {kept[0]} instead" in captured.err and "Traceback" not in captured.err
    assert captured.err.strip().count("\n") == 0


def test_writes_racing_for_one_name_all_keep_their_file(tmp_path: Path) -> None:
    written: list[Path] = []
    lock = threading.Lock()

    def write(index: int) -> None:
        path = write_new_text(tmp_path, "same-second", ".json", json.dumps({"writer": index}))
        with lock:
            written.append(path)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(written)) == 8
    assert sorted(json.loads(p.read_text())["writer"] for p in written) == list(range(8))


def test_two_default_named_runs_in_the_same_second_keep_both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import datetime, timezone

    from tokbench.results.outputs import plan_result_target, write_result_json

    monkeypatch.chdir(tmp_path)
    now = datetime(2026, 11, 27, 7, 0, 0, tzinfo=timezone.utc)
    first = write_result_json({"seed": 1}, plan_result_target(None, "same", now))
    second = write_result_json({"seed": 2}, plan_result_target(None, "same", now))
    assert first != second and first.parent == second.parent == Path("tokbench-results")
    assert json.loads(first.read_text()) == {"seed": 1} and json.loads(second.read_text()) == {"seed": 2}


# --- untrusted names ----------------------------------------------------------------------------------


def test_a_path_like_name_never_writes_outside_the_output_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["run", *FAST, "--name", "../../../escaped"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["work"]
    written = list((work / "tokbench-results").iterdir())
    assert len(written) == 1 and written[0].name.startswith("escaped-")

    from tokbench.engine.profiling import default_trace_path

    for name in ("../../x", "/etc/passwd", "..", "a/../../b"):
        trace = default_trace_path(name, work / "traces")
        assert trace.parent == work / "traces" and ".." not in trace.name and "/" not in trace.name
    assert safe_filename("/abs/olute") == "abs-olute" and safe_filename("") == "run"


def test_control_characters_never_reach_the_terminal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = BenchmarkConfig(name=EVIL, model="tiny-llama", device="cpu")
    result = _skipped_result(config, f"reason {EVIL}", "inline", {})
    print_result(result, make_console())
    db = tmp_path / "theirs.db"
    _store_with(db, EVIL)
    assert main(["history", "--db", str(db)]) == 0
    assert main(["show", "1", "--db", str(db)]) == 0
    output = capsys.readouterr().out
    assert "\x1b" not in output and "\x07" not in output and "\u202e" not in output
    assert "\\x1b]0;pwned\\x07" in output
    assert terminal_safe("a\nb", newlines=False) == "a\\nb"


def test_csv_export_never_emits_formula_cells(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    _store_with(db, '=HYPERLINK("http://evil")', "+cmd", "@sum", "plain")
    out = tmp_path / "out.csv"
    assert main(["export", "--format", "csv", "--db", str(db), "--output", str(out)]) == 0
    import csv

    names = [row["name"] for row in csv.DictReader(out.open())]
    assert names == ["'=HYPERLINK(\"http://evil\")", "'+cmd", "'@sum", "plain"]
    assert spreadsheet_safe("-3.5") == "-3.5" and spreadsheet_safe("-x") == "'-x" and spreadsheet_safe(2) == 2


# --- read commands change nothing -----------------------------------------------------------------------


def test_read_commands_refuse_another_applications_database_and_leave_it_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.sqlite"
    connection = sqlite3.connect(other)
    connection.execute("CREATE TABLE accounts (id INTEGER, balance REAL)")
    connection.execute("PRAGMA user_version = 7")
    connection.commit()
    connection.close()
    before = _sha(other)
    for command in (["history"], ["show", "1"], ["export", "--format", "json"]):
        assert main([*command, "--db", str(other)]) == 4
    assert _sha(other) == before
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and all("is not a tokbench results store" in line for line in errors)


def test_read_commands_do_not_write_to_a_store(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    _store_with(db, "one", "two")
    before = _sha(db)
    assert main(["history", "--db", str(db)]) == 0
    assert main(["show", "2", "--db", str(db)]) == 0
    assert main(["export", "--format", "json", "--db", str(db), "--output", str(tmp_path / "e.json")]) == 0
    assert _sha(db) == before and not any(p.name.endswith(("-journal", "-wal")) for p in tmp_path.iterdir())


def test_export_onto_the_store_itself_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "r.db"
    _store_with(db, "one")
    before = _sha(db)
    assert main(["export", "--format", "csv", "--db", str(db), "--output", str(db)]) == 2
    assert _sha(db) == before and "is a database (a results store?)" in capsys.readouterr().err


def test_a_damaged_store_gives_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "r.db"
    _store_with(db, *[f"run-{i}" for i in range(40)])
    data = bytearray(db.read_bytes())
    page = 4096
    data[2 * page : 3 * page] = os.urandom(page)  # garbage over a b-tree page
    db.write_bytes(bytes(data))
    assert main(["history", "--db", str(db)]) == 4
    error = capsys.readouterr().err
    assert error.startswith("tokbench: ") and error.count("\n") == 1 and "Traceback" not in error
    with pytest.raises(StoreError):
        ResultStore(db)


def test_a_store_that_cannot_take_a_result_keeps_it_beside_the_store(
    store_tmpfs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    db = store_tmpfs / "r.db"
    ResultStore(db).close()
    filler = store_tmpfs / "filler"
    handle = os.open(filler, os.O_WRONLY | os.O_CREAT)  # unbuffered: fill what is left of the filesystem
    try:
        while True:
            os.write(handle, b"\0" * 512)
    except OSError:
        pass
    finally:
        os.close(handle)
    sweep = tmp_path / "sweep.json"
    # flash_attention_2 is skipped here (no flash-attn): a finished result without running a model.
    sweep.write_text(json.dumps({"model": "tiny-llama", "device": "cpu", "attn_implementation": "flash_attention_2"}))
    code = main(["sweep", "--config", str(sweep), "--db", str(db), "--launcher", "inline", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 4 and "cannot rollback" not in captured.err and "Traceback" not in captured.err
    assert "could not store the result" in captured.err and "full" in captured.err
    kept = list((tmp_path / "cache" / "unsaved-results").glob("*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["status"] == "skipped"
    assert str(kept[0]) in captured.err


# --- inputs that pass validation and then crash or hang ------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "field"),
    [
        (["--batch-size", "1000000000"], "batch_size"),
        (["--seed", str(10**30)], "seed"),
        (["--new-tokens", "1000000000"], "new_tokens"),
        (["--sequence-length", "1000000000"], "sequence_length"),
    ],
)
def test_absurd_sizes_are_refused_naming_the_field(
    flags: list[str], field: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", *flags]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"tokbench: invalid config: {field}: must be <=") and error.count("\n") == 1


def test_positions_beyond_the_context_fail_at_load_with_the_reason(tmp_path: Path) -> None:
    import tokbench

    result = tokbench.run(BenchmarkConfig(model="tiny-llama", device="cpu", new_tokens=9000, sequence_length=8))
    assert result.status == "failed" and "beyond the model's context of 8192" in result.reason
    assert not result.iterations


@pytest.mark.parametrize("timeout", [float("nan"), float("inf"), -1.0])
def test_sweep_timeouts_must_be_finite(timeout: float) -> None:
    with pytest.raises(ConfigError, match="finite positive number of seconds"):
        SweepSpec.from_dict({"model": "tiny-llama", "timeout_s": timeout})


def test_sweep_timeout_flag_nan_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = tmp_path / "s.yaml"
    sweep.write_text("model: tiny-llama\n")
    with pytest.raises(SystemExit) as stopped:  # argparse refuses it with the option's range
        main(["sweep", "--config", str(sweep), "--timeout", "nan", "--db", str(tmp_path / "r.db")])
    assert stopped.value.code == 2 and "--timeout: must be a number in (0, 604800)" in capsys.readouterr().err
    assert not (tmp_path / "r.db").exists()


def test_a_tuning_cache_entry_with_infinity_is_ignored_naming_the_file(tmp_path: Path) -> None:
    cache = TuningCache(tmp_path)
    key = {"shape": [8, 8]}
    path = cache.path_for(key)
    path.write_text('{"schema": 1, "key": {"shape": [8, 8]}, "winner": {}, "candidates": [{"median_ns": Infinity}]}')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cache.load(key) is None
    messages = [str(w.message) for w in caught if issubclass(w.category, TuningCacheWarning)]
    assert len(messages) == 1 and str(path) in messages[0] and "re-tuning" in messages[0]
    path.write_text('{"schema": 1, "key": {"shape": [8, 8]}, "candidates": [{"median_ns": 1e999}]}')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cache.load(key) is None
    assert any("finite" in str(w.message) for w in caught)


@pytest.fixture(scope="module")
def saved_tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tokbench.engine.loading import ModelSource, _load_weights, _preset_model_config, load_tokenizer

    folder = tmp_path_factory.mktemp("tiny-saved")
    config = BenchmarkConfig(model="tiny-llama", device="cpu")
    source = ModelSource("preset", "tiny-llama")
    _load_weights(config, source, _preset_model_config(source)).save_pretrained(folder)
    load_tokenizer(source).save_pretrained(folder)
    return folder


def _copy(folder: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(folder, target)
    return target


def test_damaged_weights_name_the_file(saved_tiny_model: Path, tmp_path: Path) -> None:
    import tokbench

    folder = _copy(saved_tiny_model, tmp_path / "model")
    weights = folder / "model.safetensors"
    weights.write_bytes(os.urandom(64) + weights.read_bytes()[64:1024])
    result = tokbench.run(BenchmarkConfig(model=str(folder), device="cpu", new_tokens=3, sequence_length=8))
    assert result.status == "failed"
    assert "cannot load the weights" in result.reason and "model.safetensors" in result.reason
    assert "damaged or incomplete" in result.reason


def test_damaged_tokenizer_names_the_file(saved_tiny_model: Path, tmp_path: Path) -> None:
    import tokbench

    folder = _copy(saved_tiny_model, tmp_path / "model")
    (folder / "tokenizer.json").write_text('{"version": "1.0", "truncated')
    result = tokbench.run(BenchmarkConfig(model=str(folder), device="cpu", new_tokens=3, sequence_length=8))
    assert result.status == "failed" and "cannot load the tokenizer" in result.reason
    assert "tokenizer.json" in result.reason


def test_remote_code_refusal_says_how_and_what_it_risks(saved_tiny_model: Path, tmp_path: Path) -> None:
    import tokbench

    folder = _copy(saved_tiny_model, tmp_path / "custom")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "configuration_x.XConfig", "AutoModelForCausalLM": "modeling_x.XModel"}
    config["model_type"] = "tokbench-custom"
    (folder / "config.json").write_text(json.dumps(config))
    result = tokbench.run(BenchmarkConfig(model=str(folder), device="cpu", new_tokens=3, sequence_length=8))
    assert result.status == "failed"
    assert "--trust-remote-code" in result.reason and "arbitrary Python" in result.reason


def test_non_utf8_config_file_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.yaml"
    config.write_bytes(b"model: tiny-llama\nname: caf\xe9\n")
    assert main(["run", "--config", str(config)]) == 2
    error = capsys.readouterr().err
    assert "is not UTF-8 text" in error and error.count("\n") == 1


def test_run_with_a_string_is_a_type_error_naming_benchmark_config() -> None:
    import tokbench

    with pytest.raises(TypeError, match=r"takes a BenchmarkConfig, got str 'tiny-llama'"):
        tokbench.run("tiny-llama")  # type: ignore[arg-type]


def test_no_traceback_for_a_missing_store_on_a_child_process(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "tokbench", "history", "--db", str(tmp_path / "missing.db")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 4 and completed.stderr.startswith("tokbench: no results store at")
    assert "Traceback" not in completed.stderr and not (tmp_path / "missing.db").exists()
