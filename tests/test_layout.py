"""The repository layout: `operator/` is a folder, never a package shadowing the standard library."""

from __future__ import annotations

import operator
import subprocess
import sys

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
