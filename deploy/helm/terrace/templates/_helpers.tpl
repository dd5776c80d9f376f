{{/* Names and labels shared by every template. */}}

{{- define "terrace.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "terrace.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "terrace.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "terrace.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "terrace.selectorLabels" -}}
app.kubernetes.io/name: {{ include "terrace.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end -}}

{{- define "terrace.runnerSelectorLabels" -}}
app.kubernetes.io/name: {{ include "terrace.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: runner
{{- end -}}

{{- define "terrace.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "terrace.secretName" -}}
{{- default (include "terrace.fullname" .) .Values.existingSecret -}}
{{- end -}}

{{- define "terrace.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "terrace.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The server's settings: the same for `serve` and the migration job. */}}
{{- define "terrace.env" -}}
- name: TERRACE_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "terrace.secretName" . }}
      key: database-url
- name: TERRACE_ENCRYPTION_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "terrace.secretName" . }}
      key: encryption-key
- name: TERRACE_PREVIOUS_ENCRYPTION_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ include "terrace.secretName" . }}
      key: previous-encryption-keys
      optional: true
- name: TERRACE_STORAGE_URL
  value: {{ required "storage.url is required (s3://, az:// or gs://): replicas share one object store" .Values.storage.url | quote }}
- name: TERRACE_LOCKS
  value: {{ .Values.locks | quote }}
- name: TERRACE_LOG_FORMAT
  value: json
{{- with .Values.publicUrl }}
- name: TERRACE_PUBLIC_URL
  value: {{ . | quote }}
{{- end }}
{{- range $name, $value := .Values.env }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}
