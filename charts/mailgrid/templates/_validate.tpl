{{/*
Rules that span values, or that deserve a clearer message than the schema's.
values.schema.json checks types and enums first (an even Raft group already
fails there); these `fail`s say why, and still hold under
--skip-schema-validation. Every message starts with the value's path.
*/}}
{{- define "mailgrid.validate" -}}
{{- $v := .Values -}}

{{- range $component := list "tenantd" "identityd" "mailstored" }}
{{- $replicas := int (index $v $component).replicas }}
{{- if not (has $replicas (list 1 3 5)) }}
{{- fail (printf "%s.replicas is %d: a Raft group needs an odd number of voters, 1, 3 or 5 (an even group survives no more failures than the odd one below it and needs a larger majority to elect and commit)" $component $replicas) }}
{{- end }}
{{- end }}
{{- if lt (int $v.mailstored.shards) 1 }}
{{- fail (printf "mailstored.shards is %d: at least one shard is needed" (int $v.mailstored.shards)) }}
{{- end }}
{{- if gt (int $v.mailstored.shards) 99 }}
{{- fail (printf "mailstored.shards is %d: at most 99 (object names must stay within 63 characters)" (int $v.mailstored.shards)) }}
{{- end }}

{{- if not $v.secrets.dkimMasterKey.existingSecret }}
{{- fail "secrets.dkimMasterKey.existingSecret is required: name an existing Secret holding the 32-byte DKIM master key under key \"master-key\" (kubectl create secret generic mailgrid-dkim --from-literal=master-key=$(openssl rand -hex 32)); key material never goes in values" }}
{{- end }}
{{- if not $v.secrets.tokenSigningKey.existingSecret }}
{{- fail "secrets.tokenSigningKey.existingSecret is required: name an existing Secret holding the Ed25519 token key pair as private.pem and public.pem (openssl genpkey -algorithm ed25519 -out private.pem; openssl pkey -in private.pem -pubout -out public.pem; kubectl create secret generic mailgrid-token-key --from-file=private.pem --from-file=public.pem); key material never goes in values" }}
{{- end }}

{{- if and $v.secrets.serviceTokenKey.existingSecret (eq $v.secrets.serviceTokenKey.existingSecret $v.secrets.tokenSigningKey.existingSecret) }}
{{- fail (printf "secrets.serviceTokenKey.existingSecret is %q, the same Secret as secrets.tokenSigningKey.existingSecret: the service-token key pair must be a second key pair (or leave serviceTokenKey empty)" $v.secrets.serviceTokenKey.existingSecret) }}
{{- end }}

{{- if and (eq $v.tls.mode "existingSecret") (not $v.tls.existingSecret) }}
{{- fail "tls.existingSecret is required with tls.mode existingSecret: name a kubernetes.io/tls Secret with tls.crt, tls.key and ca.crt" }}
{{- end }}
{{- if and (ne $v.tls.mode "certManager") $v.tls.certManager.issuerRef }}
{{- fail (printf "tls.certManager.issuerRef is set but tls.mode is %s: set tls.mode to certManager or remove the issuer" $v.tls.mode) }}
{{- end }}

{{- if and (not $v.redis.enabled) (not $v.redis.external.address) }}
{{- fail "redis.external.address is required when redis.enabled is false (host:port of your Redis)" }}
{{- end }}
{{- if and $v.redis.enabled $v.redis.external.address }}
{{- fail "redis.external.address is set but redis.enabled is true: choose one (set redis.enabled=false to use the external Redis)" }}
{{- end }}
{{- $rtls := $v.redis.external.tls }}
{{- if and (or $rtls.caSecret $rtls.clientCertSecret $rtls.serverName) (not (hasPrefix "rediss://" $v.redis.external.address)) }}
{{- fail (printf "redis.external.tls is set but redis.external.address %q is not a rediss:// URL: the daemons refuse TLS files for a plain Redis (use rediss://host:port, and redis.enabled=false)" $v.redis.external.address) }}
{{- end }}

{{- if not (regexMatch "^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$" $v.mail.hostname) }}
{{- fail (printf "mail.hostname %q is not a lower-case DNS host name (e.g. mail.example.com)" $v.mail.hostname) }}
{{- end }}
{{- range $mx := $v.mail.mxHosts }}
{{- if not (regexMatch "^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}(:[0-9]{1,5})?$" $mx) }}
{{- fail (printf "mail.mxHosts entry %q is not host or host:priority" $mx) }}
{{- end }}
{{- end }}

{{- range $component := list "relayd" "accessd" }}
{{- $a := (index $v $component).autoscaling }}
{{- if and $a.enabled (gt (int $a.minReplicas) (int $a.maxReplicas)) }}
{{- fail (printf "%s.autoscaling.minReplicas (%d) exceeds %s.autoscaling.maxReplicas (%d)" $component (int $a.minReplicas) $component (int $a.maxReplicas)) }}
{{- end }}
{{- end }}

{{- $ports := list (int $v.ports.grpc) (int $v.ports.metrics) }}
{{- if include "mailgrid.tlsEnabled" . }}{{ $ports = append $ports (int $v.ports.health) }}{{ end }}
{{- if ne (len $ports) (len (uniq $ports)) }}
{{- fail (printf "ports: grpc (%d), metrics (%d) and health (%d) must differ" (int $v.ports.grpc) (int $v.ports.metrics) (int $v.ports.health)) }}
{{- end }}
{{- range $component := list "relayd" "accessd" }}
{{- range $listener, $port := (index $v $component).listeners }}
{{- if has (int $port) $ports }}
{{- fail (printf "%s.listeners.%s is %d, which ports.* already uses" $component $listener (int $port)) }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}
