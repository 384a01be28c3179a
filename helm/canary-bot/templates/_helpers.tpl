{{/* Names, labels and the small computations the templates share. */}}

{{- define "canary-bot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "canary-bot.fullname" -}}
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

{{- define "canary-bot.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "canary-bot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "canary-bot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "canary-bot.labels" -}}
helm.sh/chart: {{ include "canary-bot.chart" . }}
{{ include "canary-bot.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: bot
app.kubernetes.io/part-of: canary-bot
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "canary-bot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "canary-bot.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "canary-bot.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The namespace `/canary NAME` means when a channel has none of its own: the one set, else the
first of rbac.namespaces (the bot can act nowhere else), else the release's namespace.
*/}}
{{- define "canary-bot.defaultNamespace" -}}
{{- $listed := and (not .Values.rbac.clusterWide) .Values.rbac.namespaces }}
{{- default (ternary (first .Values.rbac.namespaces) .Release.Namespace (not (empty $listed))) .Values.bot.defaultNamespace }}
{{- end }}

{{/* Namespaces that get a Role: the listed ones, or the release's namespace. */}}
{{- define "canary-bot.rbacNamespaces" -}}
{{- $namespaces := .Values.rbac.namespaces | default (list .Release.Namespace) }}
{{- toJson (uniq $namespaces) }}
{{- end }}

{{/*
Each resource with exactly the verbs the bot calls, and the code that calls each: the same table
is RBAC_VERBS in bot/mesh/kube.py, and the tests hold the two together.
VirtualServices: get (each plan, step check and settle reads one), list (the resync looks for
canaries a lost rollout left), patch (every guarded write, and the fences). Never watched.
DestinationRules: list and watch (the subsets a plan reads; `serve` keeps them current with a
watch), patch (a plan that adds the canary's subset), get (that patch answered 409/422: read again).
Pods: list and watch (a canary subset must select ready pods before traffic moves to it).
Services: list and watch (a host-based or HTTPRoute canary is a Service: its selector names the
pods; `serve` keeps them current with a watch, as it does Pods).
*/}}
{{- define "canary-bot.rbacRules" -}}
- apiGroups: ["networking.istio.io"]
  resources: ["virtualservices"]
  verbs: ["get", "list", "patch"]
- apiGroups: ["networking.istio.io"]
  resources: ["destinationrules"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["list", "watch"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "list", "patch"]
{{- end }}

{{/* The Secret with the Slack credentials: yours, or "<fullname>-slack" (created by you or the chart). */}}
{{- define "canary-bot.slackSecretName" -}}
{{- .Values.slack.existingSecret | default (printf "%s-slack" (include "canary-bot.fullname" .)) }}
{{- end }}

{{- define "canary-bot.policyPath" -}}
/etc/canary-bot/policy/policy.yaml
{{- end }}

{{- define "canary-bot.redisCaPath" -}}
/etc/canary-bot/redis-tls/{{ .Values.redis.tls.caKey }}
{{- end }}

{{/*
REDIS_URL without the password in it: "$(REDIS_PASSWORD)" is expanded by the kubelet from the
env var of that name, which comes from a secretKeyRef. Nothing secret is ever rendered.
*/}}
{{- define "canary-bot.redisUrl" -}}
{{- $url := urlParse .Values.redis.url }}
{{- if contains ":" $url.userinfo }}
{{- fail "redis.url must not carry a password: put it in a Secret and set redis.existingSecret and redis.passwordKey" }}
{{- end }}
{{- $user := default $url.userinfo .Values.redis.username }}
{{- $auth := "" }}
{{- if .Values.redis.existingSecret }}
{{- $auth = printf "%s:$(REDIS_PASSWORD)@" $user }}
{{- else if $user }}
{{- $auth = printf "%s@" $user }}
{{- end }}
{{- $query := $url.query }}
{{- if .Values.redis.tls.caSecret }}
{{- $ca := printf "ssl_ca_certs=%s" (include "canary-bot.redisCaPath" .) }}
{{- $query = ternary $ca (printf "%s&%s" $query $ca) (empty $query) }}
{{- end }}
{{- printf "%s://%s%s%s" $url.scheme $auth $url.host $url.path }}
{{- with $query }}?{{ . }}{{ end }}
{{- end }}

{{/* Every check on values that JSON Schema cannot express. */}}
{{- define "canary-bot.validate" -}}
{{- if and .Values.slack.createSecret .Values.slack.existingSecret }}
{{- fail "set either slack.existingSecret or slack.createSecret, not both" }}
{{- end }}
{{- if and .Values.slack.createSecret (not .Values.slack.botToken) }}
{{- fail "slack.createSecret needs slack.botToken" }}
{{- end }}
{{- if and .Values.slack.createSecret (eq .Values.slack.mode "http") (not .Values.slack.signingSecret) }}
{{- fail "slack.mode=http with slack.createSecret needs slack.signingSecret" }}
{{- end }}
{{- if and .Values.slack.createSecret (eq .Values.slack.mode "socket") (not .Values.slack.appToken) }}
{{- fail "slack.mode=socket with slack.createSecret needs slack.appToken" }}
{{- end }}
{{- if and .Values.ingress.enabled (ne .Values.slack.mode "http") }}
{{- fail "ingress.enabled is for slack.mode=http; Socket Mode needs no way in" }}
{{- end }}
{{- if and .Values.redis.urlKey (not .Values.redis.existingSecret) }}
{{- fail "redis.urlKey needs redis.existingSecret (the Secret that holds the URL)" }}
{{- end }}
{{- if and .Values.redis.tls.caSecret (not .Values.redis.urlKey) (not (hasPrefix "rediss://" .Values.redis.url)) }}
{{- fail "redis.tls.caSecret needs a rediss:// redis.url" }}
{{- end }}
{{- if and .Values.rbac.create (not .Values.rbac.clusterWide) }}
{{- $granted := include "canary-bot.rbacNamespaces" . | fromJsonArray }}
{{- $wanted := prepend (values .Values.bot.channelNamespaces) (include "canary-bot.defaultNamespace" .) }}
{{- range $wanted }}
{{- if not (has . $granted) }}
{{- fail (printf "namespace %q is used by bot.defaultNamespace or bot.channelNamespaces but not in rbac.namespaces %v: add it there, or set rbac.clusterWide=true" . $granted) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
