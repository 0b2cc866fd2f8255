{{/* The name of every object: the release name, with the chart's name added unless it is in it. */}}
{{- define "tandem.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The headless Service that gives each server pod its DNS name. */}}
{{- define "tandem.peers" -}}
{{- printf "%s-peers" (include "tandem.fullname" .) -}}
{{- end -}}

{{- define "tandem.secretName" -}}
{{- default (include "tandem.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* The probes' scheme: HTTPS when the API speaks TLS (the kubelet does not check the certificate). */}}
{{- define "tandem.apiScheme" -}}
{{- if eq .Values.server.apiTls "auto" -}}HTTPS{{- else -}}HTTP{{- end -}}
{{- end -}}

{{- define "tandem.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "tandem.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: "server" or "agent". */}}
{{- define "tandem.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* A server pod's DNS name through the headless Service. */}}
{{- define "tandem.serverHost" -}}
{{- printf "%s-%d.%s.%s.svc.%s" (include "tandem.fullname" .root) .ordinal (include "tandem.peers" .root) .root.Release.Namespace .root.Values.clusterDomain -}}
{{- end -}}

{{/*
The node list: node N is pod ordinal N-1 (what TANDEM_NODE_ID_FROM=k8s reads from the hostname),
"id cluster-address api-address" per line.
*/}}
{{- define "tandem.nodes" -}}
{{- $lines := list -}}
{{- range $ordinal := until (int .Values.server.replicas) -}}
{{- $host := include "tandem.serverHost" (dict "root" $ "ordinal" $ordinal) -}}
{{- $lines = append $lines (printf "%d %s:%d %s:%d" (add1 $ordinal) $host (int $.Values.server.clusterPort) $host (int $.Values.server.apiPort)) -}}
{{- end -}}
{{- join "\n" $lines -}}
{{- end -}}

{{/* The servers' API addresses, comma-separated, for agents. */}}
{{- define "tandem.serverApis" -}}
{{- $apis := list -}}
{{- range $ordinal := until (int .Values.server.replicas) -}}
{{- $apis = append $apis (printf "%s:%d" (include "tandem.serverHost" (dict "root" $ "ordinal" $ordinal)) (int $.Values.server.apiPort)) -}}
{{- end -}}
{{- join "," $apis -}}
{{- end -}}

{{/* Spread pods of one component over the cluster's nodes where possible. */}}
{{- define "tandem.affinity" -}}
{{- if .affinity -}}
{{- toYaml .affinity -}}
{{- else -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "tandem.selector" (dict "root" .root "component" .component) | nindent 12 }}
{{- end -}}
{{- end -}}
