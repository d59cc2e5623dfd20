{{/* The chart name, for labels. */}}
{{- define "b2ckeys.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of every object: the release name when it already contains the chart name
(`helm install b2ckeys` gives "b2ckeys", the names deploy/base uses), else <release>-<chart>.
Cluster-scoped objects (ClusterRole, ClusterRoleBinding) carry it too, so two releases in
different namespaces do not collide.
*/}}
{{- define "b2ckeys.fullname" -}}
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

{{/* Selector labels: stable across upgrades (a Deployment's selector is immutable). */}}
{{- define "b2ckeys.selectorLabels" -}}
app.kubernetes.io/name: {{ include "b2ckeys.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "b2ckeys.labels" -}}
{{ include "b2ckeys.selectorLabels" . }}
app.kubernetes.io/component: operator
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "b2ckeys.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "b2ckeys.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The one Lease the replicas elect a leader with; the Role grants get/update on it only. */}}
{{- define "b2ckeys.leaseName" -}}
{{- default (printf "%s-leader" (include "b2ckeys.fullname" .)) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "b2ckeys.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
The default tenant's credential, checked across values (the schema checks each value alone):
the operator refuses a second credential at start-up, so refuse it here, at install time.
Returns "workloadIdentity", "clientSecret", "clientCertificate" or "" (no default tenant).
*/}}
{{- define "b2ckeys.credential" -}}
{{- $azure := .Values.azure }}
{{- $chosen := list }}
{{- if $azure.workloadIdentity.enabled }}{{ $chosen = append $chosen "workloadIdentity" }}{{ end }}
{{- if $azure.clientSecret.secretName }}{{ $chosen = append $chosen "clientSecret" }}{{ end }}
{{- if $azure.clientCertificate.secretName }}{{ $chosen = append $chosen "clientCertificate" }}{{ end }}
{{- if gt (len $chosen) 1 }}
{{- fail (printf "azure: set exactly one credential for the default tenant, found %s (set azure.workloadIdentity.enabled=false to use a client secret or certificate)" (join ", " $chosen)) }}
{{- end }}
{{- if and $azure.tenantId (not $azure.clientId) }}
{{- fail "azure.clientId is empty: the default tenant needs both azure.tenantId and azure.clientId" }}
{{- end }}
{{- if and $azure.clientId (not $azure.tenantId) }}
{{- fail "azure.tenantId is empty: the default tenant needs both azure.tenantId and azure.clientId" }}
{{- end }}
{{- if and (not $azure.tenantId) (or $azure.clientSecret.secretName $azure.clientCertificate.secretName) }}
{{- fail "azure: a client secret or certificate is set but azure.tenantId and azure.clientId are empty" }}
{{- end }}
{{- first (concat $chosen (list "")) }}
{{- end }}
