{{/*
Naming and labelling helpers. Names are truncated to 63 characters (the limit of a
label value and of most object names) with any trailing "-" removed.
*/}}

{{- define "fedcompute.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name: the release name, unless it already contains the chart name.
*/}}
{{- define "fedcompute.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "fedcompute.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object. The CRD templates are generated to carry these too.
*/}}
{{- define "fedcompute.labels" -}}
helm.sh/chart: {{ include "fedcompute.chart" . }}
{{ include "fedcompute.selectorLabels" . }}
app.kubernetes.io/version: {{ include "fedcompute.imageTag" . | replace "+" "_" | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: fedcompute
{{- end }}

{{/*
Labels that select the operator's pods; never change them in an upgrade.
*/}}
{{- define "fedcompute.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fedcompute.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "fedcompute.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "fedcompute.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "fedcompute.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{- define "fedcompute.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "fedcompute.imageTag" .) }}
{{- end }}
{{- end }}

{{/*
Peering: with more than one replica, `fedcompute run --peering NAME` elects one active
replica through the Lease "fedcompute-NAME" in the release namespace.
*/}}
{{- define "fedcompute.peering" -}}
{{- if gt (int .Values.replicaCount) 1 }}true{{ end }}
{{- end }}

{{- define "fedcompute.peeringName" -}}
{{- default (include "fedcompute.fullname" .) .Values.peering.name }}
{{- end }}

{{- define "fedcompute.leaderLeaseName" -}}
{{- printf "fedcompute-%s" (include "fedcompute.peeringName" .) }}
{{- end }}

{{/*
The pod anti-affinity mode the chart applies: "soft", "hard", or "" when it adds none
(one replica, mode none, or a podAntiAffinity of the user's own in `affinity`).
*/}}
{{- define "fedcompute.antiAffinityMode" -}}
{{- $mode := .Values.podAntiAffinity.mode }}
{{- if and (include "fedcompute.peering" .) (ne $mode "none") (not (hasKey (.Values.affinity | default dict) "podAntiAffinity")) }}
{{- $mode }}
{{- end }}
{{- end }}

{{/*
The pod's affinity: `affinity` as given, plus, with several replicas, a pod anti-affinity
on `podAntiAffinity.topologyKey` against the release's own pods (by their selector labels).
*/}}
{{- define "fedcompute.affinity" -}}
{{- $affinity := deepCopy (.Values.affinity | default dict) }}
{{- $mode := include "fedcompute.antiAffinityMode" . }}
{{- if $mode }}
{{- $term := dict "labelSelector" (dict "matchLabels" (include "fedcompute.selectorLabels" . | fromYaml)) "topologyKey" .Values.podAntiAffinity.topologyKey }}
{{- if eq $mode "hard" }}
{{- $_ := set $affinity "podAntiAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (list $term)) }}
{{- else }}
{{- $_ := set $affinity "podAntiAffinity" (dict "preferredDuringSchedulingIgnoredDuringExecution" (list (dict "weight" 100 "podAffinityTerm" $term))) }}
{{- end }}
{{- end }}
{{- with $affinity }}
{{- toYaml . }}
{{- end }}
{{- end }}

{{/*
Namespace of an optional monitoring object: its own setting, else the release's.
*/}}
{{- define "fedcompute.monitoringNamespace" -}}
{{- default .root.Release.Namespace .namespace }}
{{- end }}

{{/*
Consistency checks the schema cannot express.
*/}}
{{- define "fedcompute.validate" -}}
{{- if eq (int .Values.operator.healthPort) (int .Values.operator.metricsPort) }}
{{- fail "operator.healthPort and operator.metricsPort must differ" }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled (not .Values.metrics.service.enabled) }}
{{- fail "serviceMonitor.enabled needs metrics.service.enabled: the ServiceMonitor scrapes that Service" }}
{{- end }}
{{- if and (include "fedcompute.peering" .) .Values.podDisruptionBudget.enabled }}
{{- if ge (int .Values.podDisruptionBudget.minAvailable) (int .Values.replicaCount) }}
{{- fail "podDisruptionBudget.minAvailable must be less than replicaCount, or no node could ever be drained" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The metrics Service (a Service name is a DNS label: at most 63 characters).
*/}}
{{- define "fedcompute.metricsServiceName" -}}
{{- printf "%s-metrics" (include "fedcompute.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}
