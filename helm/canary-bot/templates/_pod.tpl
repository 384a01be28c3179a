{{/* Pieces of the pod spec, kept here so deployment.yaml reads top to bottom. */}}

{{/*
REDIS_URL, and the REDIS_PASSWORD it expands, always from secretKeyRef: no secret value is
ever rendered into the manifest. REDIS_PASSWORD must come first for "$(REDIS_PASSWORD)" to expand.
*/}}
{{- define "canary-bot.redisEnv" -}}
{{- if .Values.redis.urlKey }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret }}
      key: {{ .Values.redis.urlKey }}
{{- else }}
{{- if .Values.redis.existingSecret }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret }}
      key: {{ .Values.redis.passwordKey }}
{{- end }}
- name: REDIS_URL
  value: {{ include "canary-bot.redisUrl" . | quote }}
{{- end }}
{{- end }}

{{/* Replicas on different nodes (podAntiAffinity) and, when possible, in different zones. */}}
{{- define "canary-bot.podAntiAffinity" -}}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (include "canary-bot.selectorLabels" . | fromYaml)) }}
{{- if eq .Values.podAntiAffinity "hard" }}
{{- toYaml (dict "requiredDuringSchedulingIgnoredDuringExecution" (list $term)) }}
{{- else if eq .Values.podAntiAffinity "soft" }}
{{- toYaml (dict "preferredDuringSchedulingIgnoredDuringExecution" (list (dict "weight" 100 "podAffinityTerm" $term))) }}
{{- end }}
{{- end }}

{{- define "canary-bot.scheduling" -}}
{{- $affinity := deepCopy .Values.affinity }}
{{- with include "canary-bot.podAntiAffinity" . | fromYaml }}
{{- $affinity = merge $affinity (dict "podAntiAffinity" .) }}
{{- end }}
{{- with $affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .Values.zoneSpread }}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "canary-bot.selectorLabels" . | nindent 8 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
