"""The repository layout: `operator/` is a folder, never a package shadowing the standard library."""

from __future__ import annotations

import operator
import subprocess
import sys
from pathlib import Path

from .conftest import REPO


def test_operator_folder_is_not_a_python_package() -> None:
    assert not (REPO / "operator" / "__init__.py").exists()
    assert not (REPO / "trainer_image" / "__init__.py").exists()
    assert (REPO / "operator" / "kubetune_operator" / "__init__.py").exists()
    assert (REPO / "trainer_image" / "kubetune_trainer" / "contract.py").exists()


def test_import_operator_is_still_the_standard_library() -> None:
    assert operator.add(2, 3) == 5
    done = subprocess.run(
        [sys.executable, "-c", "import operator, kubetune_operator; print(operator.__file__)"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "/operator/" not in done.stdout.replace(str(REPO), "")


def test_the_documented_folders_exist() -> None:
    for folder in ("crds", "charts/kubetune/files/templates", "examples", "tests", "docs"):
        assert (REPO / folder).is_dir(), folder
    for file in ("pyproject.toml", "Makefile", "README.md", "docs/architecture.md", ".ci/run"):
        assert (REPO / file).is_file(), file


def layout_block() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("\n## Layout\n", 1)[1]
    return section.split("```", 2)[1].strip("\n").splitlines()


def named_paths() -> set[Path]:
    """Every path the README's Layout names: an entry indented by two spaces is inside the folder above it."""
    named: set[Path] = set()
    parent = REPO
    for line in layout_block():
        indent = len(line) - len(line.lstrip(" "))
        if indent > 2:  # a description's second line
            continue
        names = line.strip().split("  ", 1)[0].split()
        if indent == 0:
            parent = REPO / names[0]
        named.update((parent if indent else REPO) / name for name in names)
    return named


def test_the_readme_layout_names_only_what_exists() -> None:
    missing = sorted(str(path.relative_to(REPO)) for path in named_paths() if not path.exists())
    assert missing == []


def test_the_readme_layout_names_every_package_folder() -> None:
    named = named_paths()
    packages = ("operator/kubetune_operator", "trainer_image/kubetune_trainer")
    folders = {
        child
        for package in packages
        for child in (REPO / package).iterdir()
        if child.is_dir() and not child.name.startswith(("__", "."))
    }
    unnamed = sorted(str(folder.relative_to(REPO)) for folder in folders - named)
    assert unnamed == [], "README.md's Layout leaves these folders out"
