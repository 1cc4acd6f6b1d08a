{{/*
Names and labels shared by every template.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "kubetune.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The release's full name, the prefix of every namespaced object: <release>-kubetune, or just
<release> when the release name already contains the chart name. Kept to 52 characters so a
suffix such as "-webhook" still fits a Service name (63).
*/}}
{{- define "kubetune.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "kubetune.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "kubetune.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
kubetune.selectorLabels: the labels that select the operator's pods, carried by the operator
Deployment's pod template and the selectors of its Services (metrics and webhook):
  app.kubernetes.io/name: <kubetune.name>
  app.kubernetes.io/instance: <release name>
  app.kubernetes.io/component: operator
*/}}
{{- define "kubetune.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubetune.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/*
kubetune.metricsServiceLabels: what the ServiceMonitor selects. The operator's selector labels
alone would also match the webhook Service (it selects the same pods).
*/}}
{{- define "kubetune.metricsServiceLabels" -}}
{{ include "kubetune.selectorLabels" . }}
kubetune.dev/service: metrics
{{- end -}}

{{/*
kubetune.afterReleaseHook: annotations of objects whose kind a CRD of this chart defines (the
template catalog, kopf's peering object). Helm maps every release object to an API resource
before creating any, so on a fresh cluster these would fail the install ("no matches for kind");
as post-install/post-upgrade hooks they are mapped and created after the CRDs. Helm recreates
hook objects on each upgrade (before-hook-creation); they outlive `helm uninstall`, like the
kept CRDs.
*/}}
{{- define "kubetune.afterReleaseHook" -}}
helm.sh/hook: post-install,post-upgrade
helm.sh/hook-weight: "0"
helm.sh/hook-delete-policy: before-hook-creation
{{- end -}}

{{/* The labels that tie an object to this release. */}}
{{- define "kubetune.releaseLabels" -}}
helm.sh/chart: {{ include "kubetune.chart" . }}
app.kubernetes.io/name: {{ include "kubetune.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Labels on every object the chart installs (without the component, which the selector adds). */}}
{{- define "kubetune.commonLabels" -}}
{{ include "kubetune.releaseLabels" . }}
app.kubernetes.io/part-of: kubetune
{{- end -}}

{{/* Labels of the operator's own objects: common labels plus the operator selector labels. */}}
{{- define "kubetune.labels" -}}
{{ include "kubetune.commonLabels" . }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* The operator's ServiceAccount name. */}}
{{- define "kubetune.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kubetune.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The operator image, tag defaulting to the chart's appVersion. */}}
{{- define "kubetune.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Name of the webhook's Service (its DNS name is in the serving certificate). */}}
{{- define "kubetune.webhookService" -}}
{{- printf "%s-webhook" (include "kubetune.fullname" .) -}}
{{- end -}}

{{/* Name of the ValidatingWebhookConfiguration (cluster-scoped: unique per release). */}}
{{- define "kubetune.webhookConfigName" -}}
{{- printf "%s-%s" (include "kubetune.fullname" .) .Release.Namespace | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The restricted Pod Security profile's container securityContext. */}}
{{- define "kubetune.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
