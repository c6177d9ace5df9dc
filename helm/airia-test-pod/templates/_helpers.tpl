{{/* Names and labels. Resource names stay within 63 characters (DNS labels). */}}
{{- define "airia-test-pod.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "airia-test-pod.fullname" -}}
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

{{- define "airia-test-pod.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries, except the selector pair (see airia-test-pod.labels). */}}
{{- define "airia-test-pod.commonLabels" -}}
helm.sh/chart: {{ include "airia-test-pod.chart" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: airia-test-pod
{{- end }}

{{/* Selectors use name + instance only: they are immutable on a Deployment, so they never hold a version. */}}
{{- define "airia-test-pod.selectorLabels" -}}
app.kubernetes.io/name: {{ include "airia-test-pod.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "airia-test-pod.labels" -}}
{{ include "airia-test-pod.commonLabels" . }}
app.kubernetes.io/name: {{ include "airia-test-pod.name" . }}
{{- end }}

{{- define "airia-test-pod.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "airia-test-pod.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image: an explicit digest wins; otherwise the tag, which defaults to the chart's appVersion. */}}
{{- define "airia-test-pod.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "airia-test-pod.authSecretName" -}}
{{- default (printf "%s-auth" (include "airia-test-pod.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{- define "airia-test-pod.targetSecretName" -}}
{{- printf "%s-targets" (include "airia-test-pod.fullname" .) }}
{{- end }}

{{/*
Where every secret field of every target comes from, as a YAML list of bindings:
  {target, field, entry, env, secret, key}
`secretRefs.<field>: {name, key}` binds one field; `secretRefs.<field>: {<entry>: {name, key}}` binds the
entries of a map field (e.g. http headers). Without `name`, the key is one of targetSecrets.
The variable is TESTPOD_SECRET_<TARGET>__<FIELD>[__<ENTRY>], upper case, other characters as `_`.
*/}}
{{- define "airia-test-pod.secretBindings" -}}
{{- $chartSecret := include "airia-test-pod.targetSecretName" . }}
{{- $bindings := list }}
{{- $envs := dict }}
{{- range $target := .Values.targets }}
{{- range $field, $ref := ($target.secretRefs | default dict) }}
{{- $refs := dict "" $ref }}
{{- if not (kindIs "string" $ref.key) }}
{{- $refs = $ref }}
{{- end }}
{{- range $entry, $one := $refs }}
{{- $env := printf "TESTPOD_SECRET_%s__%s" $target.name $field }}
{{- if $entry }}
{{- $env = printf "%s__%s" $env $entry }}
{{- end }}
{{- $env = regexReplaceAll "[^A-Z0-9_]" (upper $env) "_" }}
{{- if hasKey $envs $env }}
{{- fail (printf "targets %q: secretRefs.%s.%s and another secret ref both map to the variable %s; rename one" $target.name $field $entry $env) }}
{{- end }}
{{- $_ := set $envs $env true }}
{{- if and (not $one.name) (not (hasKey ($.Values.targetSecrets | default dict) $one.key)) }}
{{- fail (printf "targets %q: secretRefs.%s%s has no Secret name, and targetSecrets has no key %q" $target.name $field (ternary (printf ".%s" $entry) "" (ne $entry "")) $one.key) }}
{{- end }}
{{- $bindings = append $bindings (dict "target" $target.name "field" $field "entry" $entry "env" $env "secret" ($one.name | default $chartSecret) "key" $one.key) }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml $bindings }}
{{- end }}

{{/*
The targets file as the pod reads it: each bound secret field becomes `${VARIABLE}`, resolved from the file of
that name among the mounted Secret keys (airia-test-pod.targetSecretVolume), so no secret is ever written into
the ConfigMap.
*/}}
{{- define "airia-test-pod.targetsFile" -}}
{{- $bindings := include "airia-test-pod.secretBindings" . | fromYamlArray }}
{{- $targets := list }}
{{- $seen := dict }}
{{- range $target := .Values.targets }}
{{- if hasKey $seen $target.name }}
{{- fail (printf "targets: the name %q is used twice; names must be unique" $target.name) }}
{{- end }}
{{- $_ := set $seen $target.name true }}
{{- $rendered := omit (deepCopy $target) "secretRefs" }}
{{- range $binding := $bindings }}
{{- if eq $binding.target $target.name }}
{{- $reference := printf "${%s}" $binding.env }}
{{- if $binding.entry }}
{{- $entries := get $rendered $binding.field | default dict }}
{{- $_ := set $entries $binding.entry $reference }}
{{- $_ := set $rendered $binding.field $entries }}
{{- else }}
{{- $_ := set $rendered $binding.field $reference }}
{{- end }}
{{- end }}
{{- end }}
{{- $targets = append $targets $rendered }}
{{- end }}
{{- toYaml (dict "targets" $targets) }}
{{- end }}

{{/*
The bound secret fields as files: a projected volume with one file per variable, named like it. Kubernetes
updates it in place, and the app resolves the targets file against it at every run, so a rotated Secret is
used by the next run without a restart. Empty when no target has secretRefs.
*/}}
{{- define "airia-test-pod.targetSecretSources" -}}
{{- range $binding := include "airia-test-pod.secretBindings" . | fromYamlArray }}
- secret:
    name: {{ $binding.secret }}
    items:
      - key: {{ $binding.key | quote }}
        path: {{ $binding.env }}
{{- end }}
{{- end }}

{{- define "airia-test-pod.targetSecretsDir" -}}
/etc/airia-test-pod/target-secrets
{{- end }}

{{/* The container's side of those files: where they are mounted, and the variable that tells the app. */}}
{{- define "airia-test-pod.targetSecretEnv" -}}
{{- if include "airia-test-pod.targetSecretSources" . }}
- name: TESTPOD_TARGET_SECRETS_DIR
  value: {{ include "airia-test-pod.targetSecretsDir" . }}
{{- end }}
{{- end }}

{{- define "airia-test-pod.targetSecretMount" -}}
{{- if include "airia-test-pod.targetSecretSources" . }}
- name: target-secrets
  mountPath: {{ include "airia-test-pod.targetSecretsDir" . }}
  readOnly: true
{{- end }}
{{- end }}

{{- define "airia-test-pod.targetSecretVolume" -}}
{{- with include "airia-test-pod.targetSecretSources" . }}
- name: target-secrets
  projected:
    defaultMode: 0440
    sources:
      {{- . | trim | nindent 6 }}
{{- end }}
{{- end }}

{{/* The hardened container security context, shared by the server and the helm test pod. */}}
{{- define "airia-test-pod.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "airia-test-pod.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.runAsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Egress of a locked-down cluster, for both pods: the proxy variables (from values or a Secret holding URLs
with credentials) and the private CA bundle's path. */}}
{{- define "airia-test-pod.egressEnv" -}}
{{- $proxy := .Values.proxy }}
{{- range $name, $key := dict "HTTPS_PROXY" "httpsProxy" "HTTP_PROXY" "httpProxy" }}
{{- if $proxy.existingSecret }}
{{- range $variable := list $name (lower $name) }}
- name: {{ $variable }}
  valueFrom:
    secretKeyRef:
      name: {{ $proxy.existingSecret }}
      key: {{ $name }}
      optional: true
{{- end }}
{{- else if (get $proxy $key) }}
{{- range $variable := list $name (lower $name) }}
- name: {{ $variable }}
  value: {{ get $proxy $key | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- with $proxy.noProxy }}
- name: NO_PROXY
  value: {{ . | quote }}
- name: no_proxy
  value: {{ . | quote }}
{{- end }}
{{- if or .Values.caBundle.configMap .Values.caBundle.secret }}
- name: TESTPOD_CA_BUNDLE
  value: /etc/airia-test-pod/ca/ca-bundle.pem
{{- end }}
{{- end }}

{{/* Mounts of the CA bundle and the registry credentials (a dockerconfigjson Secret), for both pods. */}}
{{- define "airia-test-pod.egressVolumeMounts" -}}
{{- if or .Values.caBundle.configMap .Values.caBundle.secret }}
- name: ca-bundle
  mountPath: /etc/airia-test-pod/ca
  readOnly: true
{{- end }}
{{- if .Values.registryCredentials.secret }}
- name: registry-credentials
  mountPath: /etc/airia-test-pod/registry
  readOnly: true
{{- end }}
{{- end }}

{{- define "airia-test-pod.egressVolumes" -}}
{{- with .Values.caBundle }}
{{- if .secret }}
- name: ca-bundle
  secret:
    secretName: {{ .secret }}
    items:
      - key: {{ .key | quote }}
        path: ca-bundle.pem
{{- else if .configMap }}
- name: ca-bundle
  configMap:
    name: {{ .configMap }}
    items:
      - key: {{ .key | quote }}
        path: ca-bundle.pem
{{- end }}
{{- end }}
{{- with .Values.registryCredentials.secret }}
- name: registry-credentials
  secret:
    secretName: {{ . }}
    defaultMode: 0440
    items:
      - key: .dockerconfigjson
        path: .dockerconfigjson
{{- end }}
{{- end }}

{{/* Settings of scheduled runs, their history and the alerts (app.schedule, app.history, app.alerts). */}}
{{- define "airia-test-pod.continuousEnv" -}}
{{- if .Values.schedule.intervalSeconds }}
- name: TESTPOD_SCHEDULE_SECONDS
  value: {{ .Values.schedule.intervalSeconds | quote }}
- name: TESTPOD_SCHEDULE_JITTER
  value: {{ .Values.schedule.jitter | quote }}
{{- end }}
- name: TESTPOD_HISTORY_RUNS
  value: {{ .Values.history.runs | quote }}
- name: TESTPOD_HISTORY_DAYS
  value: {{ .Values.history.days | quote }}
- name: TESTPOD_FLAP_CHANGES
  value: {{ .Values.history.flapChanges | quote }}
- name: TESTPOD_FLAP_WINDOW_MINUTES
  value: {{ .Values.history.flapWindowMinutes | quote }}
{{- if .Values.persistence.enabled }}
- name: TESTPOD_DATA_DIR
  value: /var/lib/airia-test-pod
{{- end }}
{{- with .Values.alerts.dashboardUrl }}
- name: TESTPOD_DASHBOARD_URL
  value: {{ . | quote }}
{{- end }}
- name: TESTPOD_ALERT_REMINDER_MINUTES
  value: {{ .Values.alerts.reminderMinutes | quote }}
{{- with .Values.alerts.smtp }}
{{- if .host }}
- name: TESTPOD_ALERT_SMTP_HOST
  value: {{ .host | quote }}
{{- with .port }}
- name: TESTPOD_ALERT_SMTP_PORT
  value: {{ . | quote }}
{{- end }}
- name: TESTPOD_ALERT_SMTP_SECURITY
  value: {{ .security | quote }}
{{- with .username }}
- name: TESTPOD_ALERT_SMTP_USERNAME
  value: {{ . | quote }}
{{- end }}
- name: TESTPOD_ALERT_EMAIL_FROM
  value: {{ .from | quote }}
- name: TESTPOD_ALERT_EMAIL_TO
  value: {{ .to | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
"true" when a target reads the Kubernetes API (kinds cluster and storage): only then do the pods get a
service-account token and the release its RBAC.
*/}}
{{- define "airia-test-pod.readsCluster" -}}
{{- $reads := false -}}
{{- range .Values.targets }}{{ if has .kind (list "cluster" "storage") }}{{ $reads = true }}{{ end }}{{ end }}
{{- if $reads }}true{{ end -}}
{{- end }}

{{/*
The namespaces the storage targets create their scratch claims and pods in (default: the release's), one per line.
*/}}
{{- define "airia-test-pod.storageNamespaces" -}}
{{- $namespaces := list -}}
{{- range .Values.targets }}{{ if eq .kind "storage" }}{{ $namespaces = append $namespaces (default $.Release.Namespace .namespace) }}{{ end }}{{ end }}
{{- $namespaces | uniq | join "\n" -}}
{{- end }}

{{/*
The API access both pods share when a target reads the cluster: the token, and the image the storage check's
writer pod runs (the product's own, which the nodes have pulled already).
*/}}
{{- define "airia-test-pod.clusterEnv" -}}
{{- if include "airia-test-pod.readsCluster" . }}
- name: TESTPOD_IMAGE
  value: {{ include "airia-test-pod.image" . | quote }}
{{- end }}
{{- end }}
