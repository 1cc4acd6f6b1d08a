"""Without the `sandbox` extra, `kubetune sandbox` names the install command; the rest of the CLI still works."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# `None` in sys.modules makes `import kmock` fail as a missing package would, in that process only.
WITHOUT = "import sys; sys.modules[{module!r}] = None; from kubetune_operator.cli import main; sys.exit(main({argv!r}))"


@pytest.mark.parametrize("module", ["kmock", "cryptography"])
def test_the_missing_extra_is_named_with_its_install_command(module: str, tmp_path: Path) -> None:
    argv = ["sandbox", "--workdir", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT.format(module=module, argv=argv)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "kubetune sandbox needs the sandbox extra: pip install 'kubetune[sandbox]'" in done.stderr
    assert module in done.stderr
    assert not (tmp_path / "sandbox.json").exists()


def test_other_commands_do_not_need_the_extra() -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT.format(module="kmock", argv=["templates", "list"])],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "qwen3-4b" in done.stdout
