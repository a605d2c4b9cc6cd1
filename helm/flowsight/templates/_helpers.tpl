{{/*
Chart name, truncated to the 63 characters Kubernetes allows in names.
*/}}
{{- define "flowsight.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified release name: <release>-flowsight unless the release name already holds the chart name.
*/}}
{{- define "flowsight.fullname" -}}
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

{{- define "flowsight.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object.
*/}}
{{- define "flowsight.labels" -}}
helm.sh/chart: {{ include "flowsight.chart" . }}
{{ include "flowsight.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Labels that select the release's pods; add app.kubernetes.io/component per workload.
*/}}
{{- define "flowsight.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flowsight.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "flowsight.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Secret holding the ClickHouse DSN and ingest tokens: the user's existing one, or the chart's.
Fails when neither a DSN nor an existing Secret is given: the chart runs on a ClickHouse server.
*/}}
{{- define "flowsight.secretName" -}}
{{- if .Values.clickhouse.existingSecret }}
{{- .Values.clickhouse.existingSecret }}
{{- else }}
{{- $_ := required "clickhouse.dsn (or clickhouse.existingSecret) is required: the chart runs flowsight on a ClickHouse server, the embedded database is not supported" .Values.clickhouse.dsn }}
{{- include "flowsight.fullname" . }}
{{- end }}
{{- end }}

{{/*
"true" when any configuration file is set, else empty.
*/}}
{{- define "flowsight.hasConfig" -}}
{{- if or .Values.config.workflows .Values.config.topology .Values.config.slos .Values.config.alertRules }}true{{ end }}
{{- end }}

{{/*
Environment shared by the collector and the evaluator.
*/}}
{{- define "flowsight.env" -}}
- name: FLOWSIGHT_HOST
  value: "0.0.0.0"
- name: FLOWSIGHT_PORT
  value: "4318"
- name: FLOWSIGHT_DATA_DIR
  value: /var/lib/flowsight
- name: FLOWSIGHT_CLICKHOUSE_DSN
  valueFrom:
    secretKeyRef:
      name: {{ include "flowsight.secretName" . }}
      key: clickhouse-dsn
- name: FLOWSIGHT_DATABASE
  value: {{ .Values.clickhouse.database | quote }}
{{- with .Values.clickhouse.cluster }}
- name: FLOWSIGHT_CLUSTER
  value: {{ . | quote }}
{{- end }}
- name: FLOWSIGHT_EVALUATION_INTERVAL_SECONDS
  value: {{ .Values.evaluator.evaluationIntervalSeconds | quote }}
{{- if .Values.config.workflows }}
- name: FLOWSIGHT_WORKFLOWS_FILE
  value: /etc/flowsight/workflows.yaml
{{- end }}
{{- if .Values.config.topology }}
- name: FLOWSIGHT_TOPOLOGY_FILE
  value: /etc/flowsight/topology.yaml
{{- end }}
{{- if .Values.config.slos }}
- name: FLOWSIGHT_SLOS_FILE
  value: /etc/flowsight/slos.yaml
{{- end }}
{{- if .Values.config.alertRules }}
- name: FLOWSIGHT_ALERT_RULES_FILE
  value: /etc/flowsight/alert-rules.yaml
{{- end }}
{{- with .Values.notifications.alertmanagerUrl }}
- name: FLOWSIGHT_ALERTMANAGER_URL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.notifications.webhookUrl }}
- name: FLOWSIGHT_ALERT_WEBHOOK_URL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.notifications.slackWebhookUrl }}
- name: FLOWSIGHT_SLACK_WEBHOOK_URL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.externalUrl }}
- name: FLOWSIGHT_EXTERNAL_URL
  value: {{ . | quote }}
{{- end }}
- name: FLOWSIGHT_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: FLOWSIGHT_TOKENS_FILE
  value: /etc/flowsight-secrets/tokens.yaml
{{- end }}

{{/*
Pod and container security settings matching the image's non-root user (uid 10001).
*/}}
{{- define "flowsight.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "flowsight.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
{{- end }}

{{/*
Volumes shared by the workloads: the data directory (the write-ahead log), /tmp and the configuration files.
*/}}
{{- define "flowsight.volumes" -}}
- name: data
  emptyDir: {}
- name: tmp
  emptyDir: {}
- name: secrets
  secret:
    secretName: {{ include "flowsight.secretName" . }}
    items:
      - key: tokens.yaml
        path: tokens.yaml
{{- if include "flowsight.hasConfig" . }}
- name: config
  configMap:
    name: {{ include "flowsight.fullname" . }}-config
{{- end }}
{{- end }}

{{- define "flowsight.volumeMounts" -}}
- name: data
  mountPath: /var/lib/flowsight
- name: tmp
  mountPath: /tmp
- name: secrets
  mountPath: /etc/flowsight-secrets
  readOnly: true
{{- if include "flowsight.hasConfig" . }}
- name: config
  mountPath: /etc/flowsight
  readOnly: true
{{- end }}
{{- end }}

{{/*
Checksums that roll the pods when the configuration or the chart's Secret changes.
*/}}
{{- define "flowsight.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}
