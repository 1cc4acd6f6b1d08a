"""The chart renders with default values and with every feature on, and Helm's strict lint is clean."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from kubetune_operator.__main__ import build_parser, webhook_options
from kubetune_operator.settings import OperatorSettings

from .chart import ALL_ON, CHART_DIR, NAMESPACE, NAMESPACED, VARIANTS, WATCHED, of_kind, operator_container, render
from .chart import render_files as render_text

# Helm's only remark on this chart: it ships no icon (there is no project logo to point at).
ACCEPTED_LINT_MESSAGES = [{"severity": 1, "path": "Chart.yaml", "error": "icon is recommended"}]


@pytest.mark.parametrize("values", VARIANTS.values(), ids=VARIANTS.keys())
def test_strict_lint_is_clean(values: dict[str, Any]) -> None:
    report = helm.lint(str(CHART_DIR), values=values, strict=True)
    assert report["errors"] == []
    assert report["messages"] == ACCEPTED_LINT_MESSAGES


def test_defaults_install_the_operator_crds_catalog_and_metrics_service_only() -> None:
    objects = render({})
    kinds = sorted({r.kind for r in objects})
    assert kinds == [
        "BaseModelTemplate",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "Deployment",
        "Service",
        "ServiceAccount",
    ]
    (deployment,) = of_kind(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    templates = {t["metadata"]["name"] for t in of_kind(objects, "BaseModelTemplate")}
    assert {"qwen3-4b", "llama-3.2-1b-instruct", "mixtral-8x7b-instruct-v0.1"} <= templates
    assert len(templates) == len(list((CHART_DIR / "files" / "templates").glob("*.yaml")))


def test_templates_install_false_leaves_the_catalog_out() -> None:
    assert of_kind(render({"templates": {"install": False}}), "BaseModelTemplate") == []


def test_all_on_adds_the_webhook_peering_and_monitoring_objects() -> None:
    kinds = {r.kind for r in render(ALL_ON)}
    assert {
        "ValidatingWebhookConfiguration",
        "Secret",
        "ClusterKopfPeering",
        "ServiceMonitor",
        "PodMonitor",
        "PrometheusRule",
        "ConfigMap",
    } <= kinds


def test_container_args_are_accepted_by_the_operator_command_line() -> None:
    """The Deployment's args parse with the real `python -m kubetune_operator` parser."""
    args = build_parser().parse_args(operator_container(render({}))["args"])
    assert args.metrics_port == 8080
    assert args.peering is None
    assert not args.webhook

    namespaced = build_parser().parse_args(operator_container(render(NAMESPACED))["args"])
    assert namespaced.namespace == list(WATCHED)
    assert namespaced.webhook
    assert webhook_options(namespaced).managed_name is None, "the chart owns the ValidatingWebhookConfiguration"
    assert webhook_options(args).managed_name == "kubetune.dev", "kopf manages it for a hand-run operator"
    assert namespaced.webhook_cert == "/etc/kubetune/webhook/tls.crt"
    assert namespaced.peering == "kubetune"
    assert namespaced.verbose


def test_replicas_draw_distinct_peering_priorities_through_a_shell() -> None:
    """kopf pauses every replica sharing a priority, so each draws one at start."""
    container = operator_container(render(ALL_ON))
    shell, flag, script, zeroth = container["command"]
    assert (shell, flag, zeroth) == ("/bin/sh", "-c", "kubetune-operator")
    assert shlex.split(script)[:4] == ["exec", "python", "-m", "kubetune_operator"]
    assert '--priority "$$(shuf -i 1-1000000 -n 1)"' in script  # $$: Kubernetes leaves $( ) to the shell
    assert "command" not in operator_container(render({}))


def test_the_peering_wrapper_runs_the_operator_with_its_args_and_a_drawn_priority(tmp_path: Path) -> None:
    """The wrapper as the container runs it: Kubernetes turns `$$` into `$`, sh draws the priority
    and execs the operator with the chart's args, which it parses before looking for an API server."""
    container = operator_container(render(ALL_ON))
    argv = [word.replace("$$", "$") for word in container["command"]] + container["args"]
    environ = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "KUBECONFIG": str(tmp_path / "absent"),
    }
    done = subprocess.run(argv, env=environ, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert "no Kubernetes API configuration" in done.stderr, "every argument, --priority included, parsed"


# Recreate names rollingUpdate as null: the API server defaults rollingUpdate on a RollingUpdate
# Deployment, and Helm's three-way merge keeps that field unless the manifest deletes it, so going
# back to one replica (`helm upgrade --set replicas=1`) was refused: "spec.strategy.rollingUpdate:
# Forbidden: may not be specified when strategy `type` is 'Recreate'".
@pytest.mark.parametrize(
    ("values", "strategy"),
    [({}, {"type": "Recreate", "rollingUpdate": None}), (ALL_ON, {"type": "RollingUpdate"})],
)
def test_a_standalone_operator_is_never_run_twice_during_a_rollout(
    values: dict[str, Any], strategy: dict[str, Any]
) -> None:
    (deployment,) = of_kind(render(values), "Deployment")
    assert deployment["spec"]["strategy"] == strategy


@pytest.mark.parametrize("values", VARIANTS.values(), ids=VARIANTS.keys())
def test_settings_env_is_read_by_the_operator(values: dict[str, Any]) -> None:
    env = {e["name"]: e["value"] for e in operator_container(render(values))["env"]}
    settings = OperatorSettings.from_env(env)
    if values is ALL_ON:
        assert settings.default_checkpoint_uri == "s3://kubetune-checkpoints"
        assert settings.cache_claim == "hf-cache"


def test_every_operator_setting_has_a_chart_value() -> None:
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text(encoding="utf-8"))
    as_fields = {re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower() for key in values["settings"]}
    # `namespaces` is the top-level watchNamespaces value (it also shapes the RBAC)
    assert as_fields | {"namespaces"} == set(OperatorSettings.model_fields)


def test_default_values_are_the_operators_own_defaults() -> None:
    """The chart does not change any of the operator's defaults."""
    env = {e["name"]: e["value"] for e in operator_container(render({}))["env"]}
    settings = {k: v for k, v in env.items() if k.startswith("KUBETUNE_")}
    assert OperatorSettings.from_env(settings) == OperatorSettings()
    unset_by_default = {name for name, field in OperatorSettings.model_fields.items() if field.default in (None, ())}
    expected = {f"KUBETUNE_{name.upper()}" for name in OperatorSettings.model_fields if name not in unset_by_default}
    assert set(settings) == expected


def test_probes_use_the_metrics_servers_healthz() -> None:
    container = operator_container(render({}))
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert {"name": "metrics", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    assert container["resources"]["limits"]["memory"]


def test_metrics_service_selects_the_operator_pods_on_the_port_named_metrics() -> None:
    objects = render({})
    (service,) = of_kind(objects, "Service")
    (deployment,) = of_kind(objects, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}]
    assert service["metadata"]["namespace"] == NAMESPACE


def test_webhook_configuration_is_scoped_to_finetunejobs_and_trusts_the_served_certificate() -> None:
    objects = render(NAMESPACED)
    (config,) = of_kind(objects, "ValidatingWebhookConfiguration")
    (webhook,) = config["webhooks"]
    assert webhook["rules"] == [
        {
            "apiGroups": ["kubetune.dev"],
            "apiVersions": ["v1alpha1"],
            "operations": ["CREATE", "UPDATE"],
            "resources": ["finetunejobs"],
            "scope": "Namespaced",
        }
    ]
    assert webhook["namespaceSelector"]["matchExpressions"][0]["values"] == list(WATCHED)
    assert webhook["failurePolicy"] == "Ignore"
    assert webhook["clientConfig"]["service"]["path"] == "/validate-finetunejob"  # kopf: /<handler id>
    (secret,) = of_kind(objects, "Secret")
    assert webhook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    webhook_service = next(s for s in of_kind(objects, "Service") if s["metadata"]["name"].endswith("-webhook"))
    assert webhook["clientConfig"]["service"]["name"] == webhook_service["metadata"]["name"]


def test_notes_give_the_next_commands() -> None:
    notes = render_text({})["kubetune/templates/NOTES.txt"]
    assert "kubectl apply -n default -f examples/quickstart.yaml" in notes
    assert "kubectl get ftj -n default -w" in notes
    assert "port-forward service/kubetune-metrics 8080" in notes
    assert "docs/monitoring.md" in notes


def test_a_webhook_on_the_metrics_port_is_refused() -> None:
    """Both servers bind in one container: the operator would crash at start on the second bind."""
    with pytest.raises(helm.HelmRenderError, match=re.escape("webhook.port 8080 is metrics.port")):
        render({"webhook": {"enabled": True, "port": 8080}})
    assert render({"webhook": {"enabled": False, "port": 8080}})
