{{/* Chart name, overridable. */}}
{{- define "switchboard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{/* Prefix of every object name: the release name, plus the chart name unless it has it. */}}
{{- define "switchboard.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "switchboard.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "switchboard.operatorName" -}}{{ include "switchboard.fullname" . }}-operator{{- end -}}
{{- define "switchboard.gatewayName" -}}{{ include "switchboard.fullname" . }}-gateway{{- end -}}

{{/* The routing Secret the operator writes and config-sync reads (fixed by the product). */}}
{{- define "switchboard.routingSecret" -}}switchboard-routing{{- end -}}

{{- define "switchboard.selector" -}}
app.kubernetes.io/name: {{ include "switchboard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "switchboard.labels" -}}
{{ include "switchboard.selector" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: switchboard
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels of one component: include "switchboard.componentLabels" (list . "gateway") */}}
{{- define "switchboard.componentLabels" -}}
{{ include "switchboard.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "switchboard.componentSelector" -}}
{{ include "switchboard.selector" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "switchboard.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Gateway pods wanted at least: the HPA's floor when it scales them, else replicas. */}}
{{- define "switchboard.gatewayMinReplicas" -}}
{{- if .Values.gateway.autoscaling.enabled -}}
{{- .Values.gateway.autoscaling.minReplicas -}}
{{- else -}}
{{- .Values.gateway.replicas -}}
{{- end -}}
{{- end -}}

{{/* Pod security: uid 65532 (the image's user), never root, the runtime's seccomp profile. */}}
{{- define "switchboard.podSecurity" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "switchboard.containerSecurity" -}}
runAsNonRoot: true
runAsUser: 65532
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
The operator's permissions in each namespace it watches (a ClusterRole when it watches all).
docs/helm.md says why each verb is needed.
*/}}
{{- define "switchboard.operatorRules" -}}
- apiGroups: [switchboard.dev]
  resources: [customproviders, accesskeyconfigs, agents]
  verbs: [get, list, watch]
- apiGroups: [switchboard.dev]
  resources: [customproviders/status, accesskeyconfigs/status, agents/status]
  verbs: [patch]
{{- /* Secrets: the operator watches and lists only those labelled switchboard.dev/secret
(a label selector, which RBAC cannot express, so list/watch stay unrestricted); it gets, updates
and patches only its routing Secret by name. */}}
- apiGroups: [""]
  resources: [secrets]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [secrets]
  verbs: [create]
- apiGroups: [""]
  resources: [secrets]
  resourceNames: [{{ include "switchboard.routingSecret" . }}]
  verbs: [get, update, patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}

{{/* kopf peering is used when more than one operator replica runs. */}}
{{- define "switchboard.operatorPeering" -}}
{{- gt (int .Values.operator.replicas) 1 -}}
{{- end -}}
