{{/*
Names, labels and the pieces every mailgrid pod shares.

Most helpers take a "workload context", a dict built by mailgrid.ctx:
  root       the chart's top-level context ($)
  component  tenantd | identityd | mailstored | relayd | accessd
  shard      the mailstored shard number as a string, "" for the others
  name       the workload's object name (also its ClusterIP Service)
  values     the component's values (.Values.<component>)
*/}}

{{- define "mailgrid.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The prefix of every object. Truncated to 30 characters so that the longest
derived name (<prefix>-mailstored-NN-raft, and a StatefulSet's pods'
controller-revision-hash label <statefulset>-<10 chars>) stays within
Kubernetes' 63-character limit.
*/}}
{{- define "mailgrid.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 30 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 30 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 30 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "mailgrid.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* mailgrid.ctx: (dict "root" $ "component" "tenantd" "shard" "") -> workload context */}}
{{- define "mailgrid.ctx" -}}
{{- $root := .root -}}
{{- $name := printf "%s-%s" (include "mailgrid.fullname" $root) .component -}}
{{- if ne .shard "" -}}{{- $name = printf "%s-%s" $name .shard -}}{{- end -}}
{{- toYaml (dict "component" .component "shard" .shard "name" $name) -}}
{{- end -}}

{{/* Labels that select one workload's pods. Takes a workload context. */}}
{{- define "mailgrid.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mailgrid.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- if ne .shard "" }}
mailgrid.io/shard: {{ .shard | quote }}
{{- end }}
{{- end -}}

{{/* Labels of every object of a workload. Takes a workload context. */}}
{{- define "mailgrid.labels" -}}
{{ include "mailgrid.selectorLabels" . }}
app.kubernetes.io/part-of: mailgrid
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ include "mailgrid.chart" .root }}
{{- end -}}

{{/* Labels of release-wide objects (no component). Takes the root context. */}}
{{- define "mailgrid.releaseLabels" -}}
app.kubernetes.io/name: {{ include "mailgrid.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: mailgrid
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "mailgrid.chart" . }}
{{- end -}}

{{/* Selector of one component's pods (all shards), for NetworkPolicy peers. */}}
{{- define "mailgrid.componentSelector" -}}
app.kubernetes.io/name: {{ include "mailgrid.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "mailgrid.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "mailgrid.namespaceDomain" -}}
{{- printf "%s.svc.%s" .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{/* ---- Raft groups ---------------------------------------------------- */}}

{{/* Name of a Raft group's headless Service (stable DNS names of the peers). */}}
{{- define "mailgrid.headlessName" -}}
{{- printf "%s-raft" .name -}}
{{- end -}}

{{/*
MAILGRID_RAFT_PEERS of one group: "1=<pod-0 DNS>:<grpc>,2=<pod-1 DNS>:<grpc>,..."
Raft id = StatefulSet ordinal + 1 (ids are > 0 and never reused). The Raft
services share the gRPC port (the daemons check that their --listen port is
their advertised peer port).
*/}}
{{- define "mailgrid.raftPeers" -}}
{{- $domain := include "mailgrid.namespaceDomain" .root -}}
{{- $headless := include "mailgrid.headlessName" . -}}
{{- $peers := list -}}
{{- range $i := until (int .values.replicas) -}}
{{- $peers = append $peers (printf "%d=%s-%d.%s.%s:%d" (add1 $i) $.name $i $headless $domain (int $.root.Values.ports.grpc)) -}}
{{- end -}}
{{- join "," $peers -}}
{{- end -}}

{{/*
The gRPC addresses of every replica of a stateful component, in the syntax
its clients parse:
- tenantd, identityd: "h:p,h:p,h:p" (flag StringList, one Raft group);
- mailstored: the shard map of libs/mailstore_client (ShardMap::Parse, and
  tenantd's ParseShardMap), always with shard numbers so that shard i is
  the Raft group of StatefulSet <name>-mailstored-<i> whatever the count:
  "0=h:p,h:p,h:p;1=h:p,h:p,h:p". tenantd reads it as a comma list and joins
  it back with commas, which gives the same text.
tests/integration/test_helm_chart.py parses the rendered value the way the
C++ does and checks each shard's addresses against that shard's Raft peers.
*/}}
{{- define "mailgrid.replicaAddresses" -}}
{{- $root := .root -}}
{{- $component := .component -}}
{{- $values := index $root.Values $component -}}
{{- $shards := list "" -}}
{{- if eq $component "mailstored" -}}
{{- $shards = list -}}
{{- range $s := until (int $values.shards) -}}{{- $shards = append $shards (toString $s) -}}{{- end -}}
{{- end -}}
{{- $groups := list -}}
{{- range $shard := $shards -}}
{{- $ctx := merge (include "mailgrid.ctx" (dict "root" $root "component" $component "shard" $shard) | fromYaml) (dict "root" $root "values" $values) -}}
{{- $headless := include "mailgrid.headlessName" $ctx -}}
{{- $addresses := list -}}
{{- range $i := until (int $values.replicas) -}}
{{- $addresses = append $addresses (printf "%s-%d.%s.%s:%d" $ctx.name $i $headless (include "mailgrid.namespaceDomain" $root) (int $root.Values.ports.grpc)) -}}
{{- end -}}
{{- if eq $shard "" -}}
{{- $groups = append $groups (join "," $addresses) -}}
{{- else -}}
{{- $groups = append $groups (printf "%s=%s" $shard (join "," $addresses)) -}}
{{- end -}}
{{- end -}}
{{- join ";" $groups -}}
{{- end -}}

{{/* ---- Token keys ------------------------------------------------------- */}}

{{/*
Who holds which token key (README.md, "Token keys"). The lists follow the
daemons' options: a "verifier" declares --token-public-key, a "service
signer" declares --token-signing-key only to sign its own service tokens.
identityd signs user tokens (and its own service tokens) with the user-token
key. mailstored calls no other service, so it holds no private key.
*/}}
{{- define "mailgrid.tokenVerifiers" -}}tenantd identityd mailstored relayd{{- end -}}
{{/*
Verifiers whose --token-public-key understands "service:PATH" (a key that
may sign only service tokens: roles ["service"], no tenant): all of them.
identityd also leaves such a key out of GetPublicKeys.
*/}}
{{- define "mailgrid.tokenKeyRoleVerifiers" -}}tenantd identityd mailstored relayd{{- end -}}
{{- define "mailgrid.serviceTokenSigners" -}}tenantd relayd accessd{{- end -}}

{{/* Whether a separate service-token key pair is configured. Takes the root context. */}}
{{- define "mailgrid.serviceKeyEnabled" -}}
{{- if .Values.secrets.serviceTokenKey.existingSecret -}}true{{- end -}}
{{- end -}}

{{/*
Files of the token-key Secrets a component mounts, as YAML:
{user: [paths in tokenSigningKey's Secret], service: [paths in serviceTokenKey's]}.
Takes a workload context.
*/}}
{{- define "mailgrid.tokenFiles" -}}
{{- $separate := include "mailgrid.serviceKeyEnabled" .root -}}
{{- $verifier := has .component (splitList " " (include "mailgrid.tokenVerifiers" .)) -}}
{{- $signer := has .component (splitList " " (include "mailgrid.serviceTokenSigners" .)) -}}
{{- $user := list -}}
{{- $service := list -}}
{{- if $verifier -}}
{{- $user = append $user "public.pem" -}}
{{- if $separate -}}{{- $service = append $service "public.pem" -}}{{- end -}}
{{- end -}}
{{- if eq .component "identityd" -}}
{{- $user = append $user "private.pem" -}}
{{- /* identityd signs its own service tokens with the service key (--service-token-key). */ -}}
{{- if $separate -}}{{- $service = append $service "private.pem" -}}{{- end -}}
{{- else if $signer -}}
{{- if $separate -}}
{{- $service = append $service "private.pem" -}}
{{- else -}}
{{- $user = append $user "private.pem" -}}
{{- end -}}
{{- end -}}
{{- toYaml (dict "user" $user "service" $service) -}}
{{- end -}}

{{/* MAILGRID_TOKEN_PUBLIC_KEY / MAILGRID_TOKEN_SIGNING_KEY of a component. Takes a workload context. */}}
{{- define "mailgrid.tokenEnv" -}}
{{- $files := include "mailgrid.tokenFiles" . | fromYaml -}}
{{- $public := list -}}
{{- $userPrefix := "" -}}
{{- $servicePrefix := "" -}}
{{- if has .component (splitList " " (include "mailgrid.tokenKeyRoleVerifiers" .)) -}}
{{- $servicePrefix = "service:" -}}
{{- /* With a separate service key nothing signs a service token with the user key (identityd included). */ -}}
{{- if has "public.pem" $files.service -}}{{- $userPrefix = "user:" -}}{{- end -}}
{{- end -}}
{{- if has "public.pem" $files.user -}}{{- $public = append $public (printf "%s/run/secrets/mailgrid/token/public.pem" $userPrefix) -}}{{- end -}}
{{- if has "public.pem" $files.service -}}{{- $public = append $public (printf "%s/run/secrets/mailgrid/service-token/public.pem" $servicePrefix) -}}{{- end -}}
{{- if $public }}
# The verifier accepts tokens signed by any of these keys (comma list); a
# "service:" key only service tokens, so its holders cannot mint user tokens;
# a "user:" key no service tokens.
- name: MAILGRID_TOKEN_PUBLIC_KEY
  value: {{ join "," $public | quote }}
{{- end }}
{{- if has "private.pem" $files.user }}
- name: MAILGRID_TOKEN_SIGNING_KEY
  value: /run/secrets/mailgrid/token/private.pem
{{- if has "private.pem" $files.service }}
- name: MAILGRID_SERVICE_TOKEN_KEY
  value: /run/secrets/mailgrid/service-token/private.pem
{{- end }}
{{- else if has "private.pem" $files.service }}
- name: MAILGRID_TOKEN_SIGNING_KEY
  value: /run/secrets/mailgrid/service-token/private.pem
{{- end }}
{{- end -}}

{{/* ---- TLS ------------------------------------------------------------- */}}

{{- define "mailgrid.tlsEnabled" -}}
{{- if ne .Values.tls.mode "disabled" -}}true{{- end -}}
{{- end -}}

{{/* The Secret with a component's service certificate (tls.crt, tls.key, ca.crt). */}}
{{- define "mailgrid.tlsSecretName" -}}
{{- if eq .root.Values.tls.mode "certManager" -}}
{{- printf "%s-%s-tls" (include "mailgrid.fullname" .root) (include "mailgrid.certName" .) -}}
{{- else -}}
{{- .root.Values.tls.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "mailgrid.publicTlsSecretName" -}}
{{- if .Values.publicTls.existingSecret -}}
{{- .Values.publicTls.existingSecret -}}
{{- else -}}
{{- printf "%s-public-tls" (include "mailgrid.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* Whether the public listener certificate exists (given, or issued by the chart). */}}
{{- define "mailgrid.publicTlsEnabled" -}}
{{- if or .Values.publicTls.existingSecret (eq .Values.tls.mode "certManager") .Values.publicTls.certManager.issuerRef -}}true{{- end -}}
{{- end -}}

{{/* ---- Ports and probes ------------------------------------------------ */}}

{{/*
The port the kubelet's gRPC probes use. Kubernetes' gRPC probes speak plain
text only, so with TLS on they go to the health-only listener.
*/}}
{{- define "mailgrid.probePortName" -}}
{{- if include "mailgrid.tlsEnabled" . -}}health{{- else -}}grpc{{- end -}}
{{- end -}}

{{- define "mailgrid.probePort" -}}
{{- if include "mailgrid.tlsEnabled" . -}}{{ .Values.ports.health }}{{- else -}}{{ .Values.ports.grpc }}{{- end -}}
{{- end -}}

{{- define "mailgrid.daemonPorts" -}}
- name: grpc
  containerPort: {{ .Values.ports.grpc }}
  protocol: TCP
- name: metrics
  containerPort: {{ .Values.ports.metrics }}
  protocol: TCP
{{- if include "mailgrid.tlsEnabled" . }}
- name: health
  containerPort: {{ .Values.ports.health }}
  protocol: TCP
{{- end }}
{{- end -}}

{{/*
Probes of every daemon. Takes the root context.
- startup: TCP on the probe port, i.e. the process is up and listening. It
  does not wait for the Raft group: a replica waiting for its peers must not
  be killed, and liveness only starts after this succeeds.
- readiness: grpc.health.v1 (service ""): SERVING means the daemon serves and,
  for a Raft member, has a leader and has applied up to it. Only ready pods
  get traffic through the ClusterIP Services, and the PodDisruptionBudget
  counts only ready pods.
- liveness: TCP again, the process alone: a lost leader, Redis or peer must
  not restart a healthy process (that would turn an outage into a restart
  storm).
*/}}
{{- define "mailgrid.probes" -}}
{{- $p := .Values.probes -}}
{{- $port := include "mailgrid.probePortName" . -}}
startupProbe:
  tcpSocket:
    port: {{ $port }}
  periodSeconds: {{ $p.startup.periodSeconds }}
  failureThreshold: {{ $p.startup.failureThreshold }}
readinessProbe:
  grpc:
    port: {{ include "mailgrid.probePort" . }}
    service: ""
  periodSeconds: {{ $p.readiness.periodSeconds }}
  timeoutSeconds: {{ $p.readiness.timeoutSeconds }}
  failureThreshold: {{ $p.readiness.failureThreshold }}
livenessProbe:
  tcpSocket:
    port: {{ $port }}
  periodSeconds: {{ $p.liveness.periodSeconds }}
  timeoutSeconds: {{ $p.liveness.timeoutSeconds }}
  failureThreshold: {{ $p.liveness.failureThreshold }}
{{- end -}}

{{/* ---- Shutdown -------------------------------------------------------- */}}

{{/* Seconds the preStop hook of a workload may take. Takes a workload context. */}}
{{- define "mailgrid.preStopSeconds" -}}
{{- if has .component (list "relayd" "accessd") -}}
{{- int .values.preStopSleepSeconds -}}
{{- else if and .root.Values.raft.preStop.transferLeadership (gt (int .values.replicas) 1) -}}
{{- int .root.Values.raft.preStop.timeoutSeconds -}}
{{- else -}}
0
{{- end -}}
{{- end -}}

{{/*
terminationGracePeriodSeconds: the kubelet counts the preStop hook inside the
grace period, then sends SIGTERM; the daemon then drains for up to
--drain-timeout. So the grace period must exceed preStop + drain, or the
kubelet's SIGKILL cuts the drain short (relayd would drop SMTP transactions
instead of finishing them or answering 421).
*/}}
{{- define "mailgrid.gracePeriod" -}}
{{- $drain := int .values.drainTimeoutSeconds -}}
{{- $preStop := int (include "mailgrid.preStopSeconds" .) -}}
{{- if kindIs "invalid" .values.terminationGracePeriodSeconds -}}
{{- add $drain $preStop 15 -}}
{{- else -}}
{{- $grace := int .values.terminationGracePeriodSeconds -}}
{{- if le $grace (add $drain $preStop) -}}
{{- fail (printf "%s.terminationGracePeriodSeconds is %d: it must exceed %s.drainTimeoutSeconds (%d) plus the preStop hook (%d s), or Kubernetes kills the daemon before it has drained" .component $grace .component $drain $preStop) -}}
{{- end -}}
{{- $grace -}}
{{- end -}}
{{- end -}}

{{/* ---- Environment ----------------------------------------------------- */}}

{{/*
Environment every daemon gets. Daemons read only the MAILGRID_* options they
declare, so one list serves all. Takes a workload context.
*/}}
{{- define "mailgrid.commonEnv" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
- name: MAILGRID_LISTEN
  value: "0.0.0.0:{{ $v.ports.grpc }}"
- name: MAILGRID_METRICS_LISTEN
  value: "0.0.0.0:{{ $v.ports.metrics }}"
- name: MAILGRID_DATA_DIR
  value: /var/lib/mailgrid
- name: MAILGRID_LOG_LEVEL
  value: {{ $v.logLevel | quote }}
- name: MAILGRID_DRAIN_TIMEOUT
  value: "{{ .values.drainTimeoutSeconds }}s"
{{- if include "mailgrid.tlsEnabled" $root }}
- name: MAILGRID_HEALTH_LISTEN
  value: "0.0.0.0:{{ $v.ports.health }}"
- name: MAILGRID_TLS_CERT
  value: /run/secrets/mailgrid/tls/tls.crt
- name: MAILGRID_TLS_KEY
  value: /run/secrets/mailgrid/tls/tls.key
- name: MAILGRID_TLS_CLIENT_CA
  value: /run/secrets/mailgrid/tls/ca.crt
- name: MAILGRID_TLS_CA
  value: /run/secrets/mailgrid/tls/ca.crt
{{- with include "mailgrid.peerAcl" . }}
- name: MAILGRID_PEER_ACL
  value: {{ . | quote }}
{{- end }}
{{- with include "mailgrid.kvScope" . }}
- name: MAILGRID_KV_SCOPE
  value: {{ . | quote }}
{{- end }}
{{- end }}
- name: MAILGRID_REDIS
  value: {{ include "mailgrid.redisAddress" $root | quote }}
{{- if include "mailgrid.redisTlsFiles" . }}
{{- $rtls := $v.redis.external.tls }}
{{- if $rtls.caSecret }}
- name: MAILGRID_REDIS_TLS_CA
  value: /run/secrets/mailgrid/redis-tls-ca/ca.crt
{{- end }}
{{- if $rtls.clientCertSecret }}
- name: MAILGRID_REDIS_TLS_CERT
  value: /run/secrets/mailgrid/redis-tls-client/tls.crt
- name: MAILGRID_REDIS_TLS_KEY
  value: /run/secrets/mailgrid/redis-tls-client/tls.key
{{- end }}
{{- if $rtls.serverName }}
- name: MAILGRID_REDIS_TLS_SERVER_NAME
  value: {{ $rtls.serverName | quote }}
{{- end }}
{{- end }}
- name: MAILGRID_TENANTD
  value: {{ include "mailgrid.replicaAddresses" (dict "root" $root "component" "tenantd") | quote }}
- name: MAILGRID_IDENTITYD
  value: {{ include "mailgrid.replicaAddresses" (dict "root" $root "component" "identityd") | quote }}
- name: MAILGRID_MAILSTORED
  value: {{ include "mailgrid.replicaAddresses" (dict "root" $root "component" "mailstored") | quote }}
- name: MAILGRID_RELAYD
  value: "{{ include "mailgrid.fullname" $root }}-relayd.{{ include "mailgrid.namespaceDomain" $root }}:{{ $v.ports.grpc }}"
{{- include "mailgrid.tokenEnv" . }}
{{- end -}}

{{/*
--peer-acl of a Raft component (libs/rpc/peer_acl.h): its Raft and KV methods
only for certificates named after the component (cert-manager issues each
component CN=<component>), plus relayd on tenantd's KV (its queue store), plus
tls.peerAcl.extraNames. Only with tls.mode certManager: with one shared
existingSecret every component presents the same certificate, so names prove
nothing. Empty for other components. Takes a workload context.
*/}}
{{- define "mailgrid.peerAcl" -}}
{{- $root := .root -}}
{{- $acl := $root.Values.tls.peerAcl -}}
{{- if and (eq $root.Values.tls.mode "certManager") $acl.enabled (has .component (list "tenantd" "identityd" "mailstored")) -}}
{{- $self := include "mailgrid.certName" . -}}
{{- $raft := concat (list $self) $acl.extraNames -}}
{{- $kv := list $self -}}
{{- if eq .component "tenantd" }}{{ $kv = append $kv "relayd" }}{{ end -}}
{{- $kv = concat $kv $acl.extraNames -}}
{{- printf "mailgrid.raft.v1.=%s;mailgrid.kv.v1.=%s" (join "," $raft) (join "," $kv) -}}
{{- end -}}
{{- end -}}

{{/*
The name (commonName) of a workload's service certificate in certManager
mode: the component, and for mailstored the shard too (mailstored-0,
mailstored-1, ...), so that one shard's replicas cannot call another shard's
Raft group or KV (--peer-acl). Takes a workload context.
*/}}
{{- define "mailgrid.certName" -}}
{{- if and (eq .component "mailstored") (ne (toString (.shard | default "")) "") -}}
{{- printf "%s-%s" .component (toString .shard) -}}
{{- else -}}
{{- .component -}}
{{- end -}}
{{- end -}}

{{/*
--kv-scope of tenantd (libs/replica/kv_scope.h): relayd, which the peer ACL
lets call tenantd's KV for its outbound queue, may touch only the queue's
key spaces (global outq, outq_body, outq_due, outq_held, outq_route,
outq_submit, ...: "global:outq*"), not the directory. Same conditions as
the peer ACL. Takes a workload context.
*/}}
{{- define "mailgrid.kvScope" -}}
{{- if and (include "mailgrid.peerAcl" .) (eq .component "tenantd") -}}
relayd=global:outq*
{{- end -}}
{{- end -}}

{{/*
Non-empty when this workload talks to an external Redis over TLS with
something to mount or set (redis.external.tls): only the daemons that
declare --redis-tls-* (identityd, relayd; the same list as
networkPolicy.redisClients' default), only with redis.enabled false. Takes a
workload context.
*/}}
{{- define "mailgrid.redisTlsFiles" -}}
{{- $v := .root.Values -}}
{{- $t := $v.redis.external.tls -}}
{{- if and (not $v.redis.enabled) (has .component (list "identityd" "relayd")) (or $t.caSecret $t.clientCertSecret $t.serverName) -}}
true
{{- end -}}
{{- end -}}

{{- define "mailgrid.redisAddress" -}}
{{- if .Values.redis.enabled -}}
{{- printf "%s-redis.%s:6379" (include "mailgrid.fullname" .) (include "mailgrid.namespaceDomain" .) -}}
{{- else -}}
{{- .Values.redis.external.address -}}
{{- end -}}
{{- end -}}

{{/* ---- Volumes ---------------------------------------------------------- */}}

{{/* Volumes every daemon pod has (data comes from the PVC or an emptyDir). */}}
{{- define "mailgrid.commonVolumes" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
- name: tmp
  emptyDir:
    medium: Memory
    sizeLimit: 64Mi
{{- if include "mailgrid.tlsEnabled" $root }}
- name: tls
  secret:
    secretName: {{ include "mailgrid.tlsSecretName" . }}
    defaultMode: 0440
{{- end }}
{{- $tokenFiles := include "mailgrid.tokenFiles" . | fromYaml }}
{{- range $volume := list (dict "name" "token-key" "files" $tokenFiles.user "secret" $v.secrets.tokenSigningKey) (dict "name" "service-token-key" "files" $tokenFiles.service "secret" $v.secrets.serviceTokenKey) }}
{{- if $volume.files }}
- name: {{ $volume.name }}
  secret:
    secretName: {{ $volume.secret.existingSecret }}
    defaultMode: 0440
    items:
      {{- range $volume.files }}
      - key: {{ ternary $volume.secret.publicKeyKey $volume.secret.privateKeyKey (eq . "public.pem") }}
        path: {{ . }}
      {{- end }}
{{- end }}
{{- end }}
{{- if eq .component "tenantd" }}
- name: dkim-master-key
  secret:
    secretName: {{ $v.secrets.dkimMasterKey.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ $v.secrets.dkimMasterKey.key }}
        path: master-key
{{- end }}
{{- if and (has .component (list "relayd" "accessd")) (include "mailgrid.publicTlsEnabled" $root) }}
- name: public-tls
  secret:
    secretName: {{ include "mailgrid.publicTlsSecretName" $root }}
    defaultMode: 0440
{{- end }}
{{- if include "mailgrid.redisTlsFiles" . }}
{{- with $v.redis.external.tls.caSecret }}
- name: redis-tls-ca
  secret:
    secretName: {{ . }}
    defaultMode: 0440
    items:
      - key: {{ $v.redis.external.tls.caKey }}
        path: ca.crt
{{- end }}
{{- with $v.redis.external.tls.clientCertSecret }}
- name: redis-tls-client
  secret:
    secretName: {{ . }}
    defaultMode: 0440
    items:
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
{{- end }}
{{- end }}
{{- end -}}

{{- define "mailgrid.commonVolumeMounts" -}}
{{- $root := .root -}}
- name: data
  mountPath: /var/lib/mailgrid
- name: tmp
  mountPath: /tmp
{{- if include "mailgrid.tlsEnabled" $root }}
- name: tls
  mountPath: /run/secrets/mailgrid/tls
  readOnly: true
{{- end }}
{{- $tokenFiles := include "mailgrid.tokenFiles" . | fromYaml }}
{{- if $tokenFiles.user }}
- name: token-key
  mountPath: /run/secrets/mailgrid/token
  readOnly: true
{{- end }}
{{- if $tokenFiles.service }}
- name: service-token-key
  mountPath: /run/secrets/mailgrid/service-token
  readOnly: true
{{- end }}
{{- if eq .component "tenantd" }}
- name: dkim-master-key
  mountPath: /run/secrets/mailgrid/dkim
  readOnly: true
{{- end }}
{{- if and (has .component (list "relayd" "accessd")) (include "mailgrid.publicTlsEnabled" $root) }}
- name: public-tls
  mountPath: /run/secrets/mailgrid/public-tls
  readOnly: true
{{- end }}
{{- if include "mailgrid.redisTlsFiles" . }}
{{- if $root.Values.redis.external.tls.caSecret }}
- name: redis-tls-ca
  mountPath: /run/secrets/mailgrid/redis-tls-ca
  readOnly: true
{{- end }}
{{- if $root.Values.redis.external.tls.clientCertSecret }}
- name: redis-tls-client
  mountPath: /run/secrets/mailgrid/redis-tls-client
  readOnly: true
{{- end }}
{{- end }}
{{- end -}}

{{/* ---- Scheduling ------------------------------------------------------- */}}

{{/*
Pod anti-affinity: replicas of one workload on different nodes, so a node's
loss takes at most one voter of a Raft group. "required" never co-locates
(pods stay Pending when nodes are short); "preferred" tries.
*/}}
{{- define "mailgrid.affinity" -}}
{{- if .values.affinity -}}
{{- toYaml .values.affinity -}}
{{- else -}}
{{- $mode := .root.Values.raft.antiAffinity -}}
{{- if has .component (list "relayd" "accessd") -}}{{- $mode = "preferred" -}}{{- end -}}
podAntiAffinity:
{{- if eq $mode "required" }}
  requiredDuringSchedulingIgnoredDuringExecution:
    - topologyKey: {{ .root.Values.raft.topologyKey }}
      labelSelector:
        matchLabels:
          {{- include "mailgrid.selectorLabels" . | nindent 10 }}
{{- else }}
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: {{ .root.Values.raft.topologyKey }}
        labelSelector:
          matchLabels:
            {{- include "mailgrid.selectorLabels" . | nindent 12 }}
{{- end }}
{{- end -}}
{{- end -}}

{{/* Pod-level fields shared by every daemon pod. Takes a workload context. */}}
{{- define "mailgrid.podCommon" -}}
{{- $root := .root -}}
serviceAccountName: {{ include "mailgrid.fullname" $root }}
automountServiceAccountToken: {{ $root.Values.serviceAccount.automountToken }}
enableServiceLinks: false
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
terminationGracePeriodSeconds: {{ include "mailgrid.gracePeriod" . }}
affinity:
  {{- include "mailgrid.affinity" . | nindent 2 }}
{{- with .values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $root.Values.image.pullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- end -}}

{{/*
Pod template metadata shared by every daemon pod. Takes a workload context.
No chart or app version labels here: bumping the chart alone must not
restart every mail server (an image change does).
*/}}
{{- define "mailgrid.podMetadata" -}}
labels:
  {{- include "mailgrid.selectorLabels" . | nindent 2 }}
  app.kubernetes.io/part-of: mailgrid
  {{- with .values.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- if or .root.Values.metrics.podAnnotations .values.podAnnotations }}
annotations:
  {{- if .root.Values.metrics.podAnnotations }}
  prometheus.io/scrape: "true"
  prometheus.io/port: {{ .root.Values.ports.metrics | quote }}
  prometheus.io/path: /metrics
  {{- end }}
  {{- with .values.podAnnotations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}
{{- end -}}
