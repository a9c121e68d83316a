{{/*
A stateless edge service: relayd (SMTP) or accessd (IMAP/POP3). Takes a
workload context plus "publicPorts": a list of {name, port} (the public port
and the listener whose container port it maps to). Renders the Deployment,
its HorizontalPodAutoscaler, PodDisruptionBudget, the ClusterIP Service for
gRPC and metrics, and the public Service.

Shutdown: preStop sleeps a few seconds so load balancers and kube-proxy stop
sending new connections, then SIGTERM makes the daemon stop accepting,
finish or 4xx in-flight transactions and answer 421 (relayd) or BYE
(accessd) within --drain-timeout; the grace period exceeds both.
*/}}
{{- define "mailgrid.edge" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $ctx := . -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .name }}
  labels:
    {{- include "mailgrid.labels" . | nindent 4 }}
spec:
  {{- if not .values.autoscaling.enabled }}
  replicas: {{ .values.replicas }}
  {{- end }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      # Never below the current capacity during an upgrade.
      maxUnavailable: 0
      maxSurge: 1
  selector:
    matchLabels:
      {{- include "mailgrid.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      {{- include "mailgrid.podMetadata" . | nindent 6 }}
    spec:
      {{- include "mailgrid.podCommon" . | nindent 6 }}
      containers:
        - name: {{ .component }}
          image: {{ include "mailgrid.image" $root }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          command: [{{ .component | quote }}]
          env:
            {{- include "mailgrid.commonEnv" . | nindent 12 }}
            {{- range $listener, $port := .values.listeners }}
            - name: MAILGRID_{{ upper $listener }}_LISTEN
              value: "0.0.0.0:{{ $port }}"
            {{- end }}
            # The public name: relayd's banner, EHLO, Received and
            # Authentication-Results (it must match the PTR and the public
            # certificate); accessd's greeting.
            - name: {{ ternary "MAILGRID_CLUSTER_HOSTNAME" "MAILGRID_HOSTNAME" (eq .component "relayd") }}
              value: {{ $v.mail.hostname | quote }}
            {{- if include "mailgrid.publicTlsEnabled" $root }}
            - name: MAILGRID_PUBLIC_TLS_CERT
              value: /run/secrets/mailgrid/public-tls/tls.crt
            - name: MAILGRID_PUBLIC_TLS_KEY
              value: /run/secrets/mailgrid/public-tls/tls.key
            {{- end }}
            {{- with .values.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            {{- include "mailgrid.daemonPorts" $root | nindent 12 }}
            {{- range $listener, $port := .values.listeners }}
            - name: {{ $listener | replace "_" "-" }}
              containerPort: {{ $port }}
              protocol: TCP
            {{- end }}
          {{- include "mailgrid.probes" $root | nindent 10 }}
          lifecycle:
            preStop:
              {{- if semverCompare ">=1.30-0" $root.Capabilities.KubeVersion.Version }}
              sleep:
                seconds: {{ .values.preStopSleepSeconds }}
              {{- else }}
              exec:
                command: ["sleep", "{{ .values.preStopSleepSeconds }}"]
              {{- end }}
          resources:
            {{- toYaml .values.resources | nindent 12 }}
          securityContext:
            {{- toYaml $v.containerSecurityContext | nindent 12 }}
          volumeMounts:
            {{- include "mailgrid.commonVolumeMounts" . | nindent 12 }}
      volumes:
        # Scratch only: the outbound queue lives in the replicated store.
        - name: data
          emptyDir:
            sizeLimit: 1Gi
        {{- include "mailgrid.commonVolumes" . | nindent 8 }}
{{- if .values.autoscaling.enabled }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ .name }}
  labels:
    {{- include "mailgrid.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ .name }}
  minReplicas: {{ .values.autoscaling.minReplicas }}
  maxReplicas: {{ .values.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ .values.autoscaling.targetCPUUtilizationPercentage }}
  behavior:
    scaleDown:
      # Sessions are long-lived; scaling down drains them, so not eagerly.
      stabilizationWindowSeconds: {{ .values.autoscaling.scaleDownStabilizationSeconds }}
      policies:
        - type: Pods
          value: 1
          periodSeconds: 60
{{- end }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ .name }}
  labels:
    {{- include "mailgrid.labels" . | nindent 4 }}
spec:
  maxUnavailable: 1
  selector:
    matchLabels:
      {{- include "mailgrid.selectorLabels" . | nindent 6 }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ .name }}
  labels:
    {{- include "mailgrid.labels" . | nindent 4 }}
    mailgrid.io/metrics: "true"
spec:
  type: ClusterIP
  selector:
    {{- include "mailgrid.selectorLabels" . | nindent 4 }}
  ports:
    - name: grpc
      port: {{ $v.ports.grpc }}
      targetPort: grpc
      protocol: TCP
    - name: metrics
      port: {{ $v.ports.metrics }}
      targetPort: metrics
      protocol: TCP
---
apiVersion: v1
kind: Service
metadata:
  name: {{ .name }}-public
  labels:
    {{- include "mailgrid.labels" . | nindent 4 }}
  {{- with $v.publicService.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ $v.publicService.type }}
  # Local: connections go only to nodes running a pod and keep the client's
  # source IP, which SPF checks, rate limits and logs need.
  externalTrafficPolicy: Local
  {{- if eq $v.publicService.type "LoadBalancer" }}
  {{- with $v.publicService.loadBalancerClass }}
  loadBalancerClass: {{ . }}
  {{- end }}
  {{- with $v.publicService.loadBalancerSourceRanges }}
  loadBalancerSourceRanges:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- end }}
  selector:
    {{- include "mailgrid.selectorLabels" . | nindent 4 }}
  ports:
    {{- range .publicPorts }}
    - name: {{ .name | replace "_" "-" }}
      port: {{ .port }}
      targetPort: {{ .name | replace "_" "-" }}
      protocol: TCP
      {{- $nodePort := index $v.publicService.nodePorts .name }}
      {{- if and (eq $v.publicService.type "NodePort") $nodePort }}
      nodePort: {{ $nodePort }}
      {{- end }}
    {{- end }}
{{- end -}}
