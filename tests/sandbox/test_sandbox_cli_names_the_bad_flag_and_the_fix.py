"""`kubetune sandbox` with a wrong flag stops at once, naming the flag and what to give instead.

A port out of range used to end in an OverflowError traceback; a missing --hf-home or a bad
--namespace used to start a sandbox whose pods could never find the model or whose kubeconfig
pointed at a namespace the API refuses.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetune_operator.cli import main


@pytest.mark.parametrize(
    ("flag", "value", "said"),
    [
        ("--port", "99999", "argument --port: 99999 is not a port number: give 0-65535 (0 picks a free one)"),
        ("--port", "-1", "argument --port: -1 is not a port number: give 0-65535"),
        ("--port", "http", "argument --port: 'http' is not a port number"),
        ("--hf-home", "{tmp}/missing", "argument --hf-home: {tmp}/missing is not a directory: give the HF_HOME"),
        ("--hf-home", "{tmp}/a-file", "argument --hf-home: {tmp}/a-file is not a directory"),
        ("--namespace", "Team_A", "argument --namespace: 'Team_A' is not a namespace name: lowercase letters"),
    ],
)
def test_the_bad_flag_is_named_with_the_fix_and_nothing_starts(
    flag: str, value: str, said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a-file").write_text("not a cache")
    workdir = tmp_path / "sandbox"
    with pytest.raises(SystemExit) as exited:
        main(["sandbox", "--workdir", str(workdir), flag, value.format(tmp=tmp_path)])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert said.format(tmp=tmp_path) in error
    assert "Traceback" not in error
    assert not workdir.exists()
