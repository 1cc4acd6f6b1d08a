"""Every `kubetune ...` or `kubectl ...` command that the project's messages and hints tell a user to run exists.

The commands are found in the source's string literals (hints, error messages, printed advice;
not docstrings) between backticks; an f-string's placeholders become a placeholder word. Each `kubetune` command
must parse with the real CLI parser; each `kubectl` command must be one kubectl knows
(`kubectl ... --help` succeeds), when kubectl is installed.
"""

from __future__ import annotations

import ast
import contextlib
import io
import re
import shlex
import shutil
import subprocess

import pytest

from kubetune_operator.cli import build_parser

from .conftest import REPO

SOURCES = ("operator/kubetune_operator", "trainer_image/kubetune_trainer", "sandbox/kubetune_sandbox")
PLACEHOLDER = "placeholder"
_COMMAND = re.compile(r"`((?:kubetune|kubectl) [^`]+)`")


def _literal_texts(tree: ast.AST) -> list[str]:
    """The strings a user may read: every literal but docstrings (a bare string statement names, it does not advise)."""
    prose = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    texts = []
    for node in ast.walk(tree):
        if id(node) in prose:
            continue
        if isinstance(node, ast.JoinedStr):
            texts.append(
                "".join(v.value if isinstance(v, ast.Constant) else PLACEHOLDER for v in node.values)  # type: ignore[misc]
            )
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            texts.append(node.value)
    return texts


def advised_commands() -> dict[str, str]:
    """command -> the file that advises it."""
    found: dict[str, str] = {}
    for root in SOURCES:
        for path in sorted((REPO / root).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            texts = _literal_texts(tree)
            # Implicitly concatenated literals are one Constant already; a hint split over `+` is not.
            for text in texts:
                for command in _COMMAND.findall(text):
                    found.setdefault(command, str(path.relative_to(REPO)))
    return found


ADVISED = advised_commands()
KUBETUNE_COMMANDS = sorted(c for c in ADVISED if c.startswith("kubetune "))
KUBECTL_COMMANDS = sorted(c for c in ADVISED if c.startswith("kubectl "))


def test_the_hints_advise_commands() -> None:
    assert "kubetune validate job.yaml" in KUBETUNE_COMMANDS
    assert "kubetune templates list" in KUBETUNE_COMMANDS
    assert any(c.startswith("kubectl get bmt") for c in KUBECTL_COMMANDS)


@pytest.mark.parametrize("command", KUBETUNE_COMMANDS)
def test_each_advised_kubetune_command_parses_with_the_real_cli(command: str) -> None:
    argv = shlex.split(command)[1:]
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            args = build_parser().parse_args(argv)
    except SystemExit as refused:
        pytest.fail(f"{ADVISED[command]} advises `{command}`, which kubetune refuses: {errors.getvalue()} ({refused})")
    assert callable(args.run)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("command", KUBECTL_COMMANDS)
def test_each_advised_kubectl_command_is_one_kubectl_knows(command: str) -> None:
    argv = [word for word in shlex.split(command) if not word.startswith("-")]
    done = subprocess.run([*argv, "--help"], capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, f"{ADVISED[command]} advises `{command}`: {done.stderr}"
    assert "Usage:" in done.stdout
