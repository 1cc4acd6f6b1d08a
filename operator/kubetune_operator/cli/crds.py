"""`kubetune crds`: write the CRDs from the models, or check the files in the repo have not drifted.

One source, two copies: `crds/*.yaml` (for `kubectl apply -f crds/`) and, where the Helm chart
is, `charts/kubetune/templates/crds/*.yaml`: the same objects wrapped as chart templates, so
`helm upgrade` upgrades the CRDs (Helm never upgrades a chart's top-level `crds/` folder).
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path
from typing import Any

from ..api import crdgen

CHART_CRDS = Path("charts/kubetune/templates/crds")
_CHART_METADATA = """\
metadata:
  {{- if .Values.crds.keep }}
  annotations:
    # helm uninstall leaves the CRD, and with it every FineTuneJob and BaseModelTemplate
    helm.sh/resource-policy: keep
  {{- end }}
  labels:
    {{- include "kubetune.commonLabels" . | nindent 4 }}
"""


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "crds", help="write crds/*.yaml (and the chart's copies) from the API models", description=__doc__
    )
    parser.add_argument("--out", type=Path, default=Path("crds"), help="directory of the CRD files (default: crds)")
    parser.add_argument(
        "--chart-out",
        type=Path,
        default=CHART_CRDS,
        help=f"directory of the chart's CRD templates, written when its chart exists (default: {CHART_CRDS})",
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 when a file differs from the models"
    )
    parser.set_defaults(run=run)


def chart_template(text: str) -> str:
    """A rendered CRD as a chart template: installed when `crds.install`, labelled, kept when `crds.keep`."""
    if "{{" in text:
        raise ValueError("a CRD holds '{{', which Helm would read as a template action: escape it in the model")
    head, separator, rest = text.partition("\nmetadata:\n")
    if not separator:
        raise ValueError("a rendered CRD has no top-level metadata")
    return "{{- if .Values.crds.install }}\n" + head + "\n" + _CHART_METADATA + rest + "{{- end }}\n"


def expected_files(out: Path, chart_out: Path) -> dict[Path, str]:
    """Every CRD file `kubetune crds` writes, with its text; the chart's only when its chart exists."""
    files = {out / name: text for name, text in crdgen.rendered_files().items()}
    if (chart_out.parent.parent / "Chart.yaml").exists():
        files |= {chart_out / name: chart_template(text) for name, text in crdgen.rendered_files().items()}
    return files


def run(args: argparse.Namespace) -> int:
    drifted = []
    for path, text in expected_files(args.out, args.chart_out).items():
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current == text:
            print(f"{path}: up to date")
            continue
        if args.check:
            drifted.append(path)
            diff = difflib.unified_diff(
                current.splitlines(keepends=True), text.splitlines(keepends=True), str(path), f"{path} (generated)"
            )
            sys.stderr.writelines(list(diff)[:60])
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"{path}: written")
    if drifted:
        print(
            f"{len(drifted)} CRD file(s) differ from the API models: run `kubetune crds` and commit the result",
            file=sys.stderr,
        )
        return 1
    return 0
