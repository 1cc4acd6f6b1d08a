"""A built wheel carries the chart's template catalog, so `kubetune templates` works when installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import CATALOG_DIR, REPO


def test_an_installed_wheel_loads_the_same_catalog(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(
        REPO, source, symlinks=True, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", ".*cache")
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-q", "-w", str(tmp_path / "dist")],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("kubetune-*.whl")
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    probe = (
        "import kubetune_operator; from kubetune_operator.resolve.catalog import load_catalog; "
        "print(kubetune_operator.__file__); print(','.join(load_catalog().names()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        check=True,
    )
    where, names = done.stdout.splitlines()
    assert where.startswith(str(target)), "imported from the wheel, not the checkout"
    assert names.split(",") == sorted(p.stem for p in CATALOG_DIR.glob("*.yaml"))
