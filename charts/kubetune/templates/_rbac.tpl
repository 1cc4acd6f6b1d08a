{{/*
The operator's rights, one rule per reason. No wildcards, no Secrets (trainer pods read the HF
token and W&B key through secretKeyRef env; the operator only handles Secret names), no
escalate, bind or impersonate.
*/}}

{{/* Rules in every namespace the operator watches (a ClusterRole when it watches them all). */}}
{{- define "kubetune.namespacedRules" -}}
# FineTuneJobs: watched (kopf indexes), deleted after ttlSecondsAfterFinished.
- apiGroups: ["kubetune.dev"]
  resources: ["finetunejobs"]
  verbs: ["get", "list", "watch", "delete"]
# The operator owns the status. get as well as patch: the per-job Role the operator creates grants
# the trainer get and patch on its own job's status, and Kubernetes lets nobody create a Role
# granting rights they do not hold themselves (the RBAC privilege-escalation check).
- apiGroups: ["kubetune.dev"]
  resources: ["finetunejobs/status"]
  verbs: ["get", "patch"]
# The Indexed trainer Job and the preflight Job of each attempt; patch adopts an orphan.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Pods are only observed (phase, scheduling, termination message); their Job owns them.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
# Per attempt: the trainer config, the rendezvous Service, the trainer's ServiceAccount.
- apiGroups: [""]
  resources: ["configmaps", "services", "serviceaccounts"]
  verbs: ["get", "create", "patch", "delete"]
# Per job: the trainer's Role and RoleBinding (get and patch on its own FineTuneJob's status).
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "create", "patch", "delete"]
{{- if .Values.rbac.serving }}
# spec.serve, once a job Succeeded: the vLLM Deployment (its Service is above) or the KServe
# InferenceService, created if absent and read back (KServe's status.url).
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "create"]
- apiGroups: ["serving.kserve.io"]
  resources: ["inferenceservices"]
  verbs: ["get", "create"]
{{- end }}
# Events on FineTuneJobs (the operator's transitions, kopf's warnings).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- if and (gt (int .Values.replicas) 1) .Values.watchNamespaces }}
# kopf peering between replicas: the KopfPeering object in each watched namespace.
- apiGroups: ["kopf.dev"]
  resources: ["kopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
{{- end -}}

{{/* Rules only a ClusterRole can hold: cluster-scoped resources. */}}
{{- define "kubetune.clusterRules" -}}
# The BaseModelTemplate catalog (cluster-scoped), read to resolve every job's template.
- apiGroups: ["kubetune.dev"]
  resources: ["basemodeltemplates"]
  verbs: ["get", "list", "watch"]
# kopf watches CRDs to notice resources installed after it started (read-only).
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- if .Values.watchNamespaces }}
# kopf lists namespaces to expand watchNamespaces globs and to notice them come and go.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- else if gt (int .Values.replicas) 1 }}
# kopf peering between replicas: the cluster-wide ClusterKopfPeering object.
- apiGroups: ["kopf.dev"]
  resources: ["clusterkopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
{{- end -}}
