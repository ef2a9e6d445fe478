{{- define "secret-injector.name" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "secret-injector.labels" -}}
app.kubernetes.io/name: secret-injector
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: secret-injector
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "secret-injector.selector" -}}
app.kubernetes.io/name: secret-injector
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "secret-injector.tlsSecret" -}}
{{- if eq .Values.tls.mode "selfManaged" -}}
{{ .Values.tls.selfManaged.secretName }}
{{- else if eq .Values.tls.mode "provided" -}}
{{ required "tls.provided.secretName is required with tls.mode=provided" .Values.tls.provided.secretName }}
{{- else if eq .Values.tls.mode "certManager" -}}
{{ include "secret-injector.name" . }}-tls
{{- else -}}
{{ fail (printf "tls.mode %q is not one of selfManaged, provided, certManager" .Values.tls.mode) }}
{{- end -}}
{{- end -}}

{{- define "secret-injector.excluded" -}}
{{- $list := concat .Values.webhook.excludeNamespaces (list .Release.Namespace) | uniq -}}
{{- toJson $list -}}
{{- end -}}
