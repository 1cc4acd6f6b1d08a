"""`make demo` clears its old workdir; never one a running demo holds, nor a file or a folder it did not make."""

from __future__ import annotations

import fcntl
from pathlib import Path

import pytest

from kubetune_sandbox.control_plane import LOCK_FILE
from kubetune_sandbox.demo import MARKER, fresh_workdir


def _old_demo(workdir: Path) -> Path:
    (workdir / "sandbox").mkdir(parents=True)
    (workdir / MARKER).write_text("made by `make demo`\n", encoding="utf-8")
    kept = workdir / "sandbox" / "operator.log"
    kept.write_text("the running demo's log\n", encoding="utf-8")
    return kept


def test_a_finished_demo_is_cleared(tmp_path: Path) -> None:
    old = _old_demo(tmp_path / "demo")
    (old.parent / LOCK_FILE).write_text("12345\n", encoding="utf-8")  # left by a sandbox that has ended
    fresh_workdir(tmp_path / "demo")
    assert not old.exists()
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == [MARKER]


def test_a_running_demo_is_left_alone_and_named(tmp_path: Path) -> None:
    old = _old_demo(tmp_path / "demo")
    with (old.parent / LOCK_FILE).open("a+", encoding="utf-8") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what a running sandbox holds
        with pytest.raises(SystemExit, match=r"a demo is still running in .*another --workdir"):
            fresh_workdir(tmp_path / "demo")
    assert old.read_text(encoding="utf-8") == "the running demo's log\n"


def test_a_file_or_a_foreign_folder_is_refused_by_name(tmp_path: Path) -> None:
    afile = tmp_path / "notes.txt"
    afile.write_text("mine\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=r"notes.txt is a file, not a directory: pass another --workdir"):
        fresh_workdir(afile)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "data").write_text("keep\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=r"was not made by the demo"):
        fresh_workdir(tmp_path / "mine")
    assert afile.read_text(encoding="utf-8") == "mine\n"
    assert (tmp_path / "mine" / "data").exists()
