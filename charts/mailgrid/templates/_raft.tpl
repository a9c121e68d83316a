{{/*
One Raft group: tenantd, identityd, or one mailstored shard. Takes a workload
context (see _helpers.tpl) and renders its headless Service, its ClusterIP
Service, its StatefulSet and its PodDisruptionBudget.

How a group forms, and why podManagementPolicy is Parallel:
  A replica becomes ready (gRPC health SERVING) only once its group has a
  leader and it has caught up, and a leader needs a majority of the voters
  running. With the default OrderedReady policy pod 1 would not be created
  until pod 0 is ready, and pod 0 cannot be ready alone: the group would
  never form. So all replicas start together (Parallel), find each other
  through the headless Service, which publishes not-ready addresses for
  exactly this reason, and elect a leader. Readiness then does the gating
  that matters:
  - the ClusterIP Service sends clients only to replicas that caught up;
  - the PodDisruptionBudget (maxUnavailable 1) counts only ready pods, so a
    node drain never takes a second voter while one is still catching up;
  - rolling updates (which are one pod at a time whatever the policy) wait
    for each restarted replica to be ready, plus minReadySeconds, before the
    next, so the group keeps its majority through an upgrade.
*/}}
{{- define "mailgrid.raftGroup" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $headless := include "mailgrid.headlessName" . -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ $headless }}
  labels:
    {{- include "mailgrid.labels" . | nindent 4 }}
  annotations:
    mailgrid.io/purpose: "Raft peer discovery: stable DNS names for each replica"
spec:
  clusterIP: None
  # Peers must resolve each other before any of them is ready (see above).
  publishNotReadyAddresses: true
  selector:
    {{- include "mailgrid.selectorLabels" . | nindent 4 }}
  ports:
    - name: grpc
      port: {{ $v.ports.grpc }}
      targetPort: grpc
      protocol: TCP
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
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{ .name }}
  labels:
    {{- include "mailgrid.labels" . | nindent 4 }}
spec:
  serviceName: {{ $headless }}
  replicas: {{ .values.replicas }}
  podManagementPolicy: Parallel
  minReadySeconds: 10
  updateStrategy:
    type: RollingUpdate
  persistentVolumeClaimRetentionPolicy:
    whenDeleted: {{ $v.raft.pvcRetention.whenDeleted }}
    whenScaled: {{ $v.raft.pvcRetention.whenScaled }}
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
          # The Raft id is the pod's ordinal + 1 (pod <name>-0 is id 1); it
          # is known only inside the pod, from its host name, hence the
          # shell. exec keeps the daemon PID 1 so it receives SIGTERM.
          command: ["/bin/sh", "-c"]
          args:
            - |
              export MAILGRID_RAFT_ID=$(( ${HOSTNAME##*-} + 1 ))
              exec {{ .component }}
          env:
            {{- include "mailgrid.commonEnv" . | nindent 12 }}
            - name: MAILGRID_STORE
              value: replicated
            - name: MAILGRID_RAFT_PEERS
              value: {{ include "mailgrid.raftPeers" . | quote }}
            # The daemons' own group names (their defaults, and what the
            # local launcher's replicas use): tenantd, identityd, mailstore-<shard>.
            - name: MAILGRID_RAFT_GROUP
              value: {{ ternary (printf "mailstore-%s" .shard) .component (eq .component "mailstored") | quote }}
            # The raft wire (plain TCP beside gRPC, libs/replica/wire.h) is
            # off in the chart: it has no TLS yet (with tls.mode on the
            # daemons leave it off anyway), and its port is not in the
            # NetworkPolicies. Raft travels on the gRPC port.
            - name: MAILGRID_RAFT_WIRE
              value: "false"
            {{- if eq .component "tenantd" }}
            - name: MAILGRID_DKIM_MASTER_KEY_FILE
              value: /run/secrets/mailgrid/dkim/master-key
            # Mailboxes are placed on shards 0..N-1 (MAILGRID_MAILSTORED names them all).
            - name: MAILGRID_MAILSTORE_SHARDS
              value: {{ $v.mailstored.shards | quote }}
            - name: MAILGRID_CLUSTER_HOSTNAME
              value: {{ $v.mail.hostname | quote }}
            {{- with $v.mail.mxHosts }}
            - name: MAILGRID_MX_HOSTS
              value: {{ join "," . | quote }}
            {{- end }}
            {{- with $v.mail.spfInclude }}
            - name: MAILGRID_SPF_INCLUDE
              value: {{ . | quote }}
            {{- end }}
            {{- end }}
            {{- if eq .component "mailstored" }}
            # The shard this group serves: mailstored stamps it on the
            # mailboxes it creates and refuses deliveries for other shards.
            - name: MAILGRID_SHARD
              value: {{ .shard | quote }}
            {{- end }}
            {{- with .values.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            {{- include "mailgrid.daemonPorts" $root | nindent 12 }}
          {{- include "mailgrid.probes" $root | nindent 10 }}
          {{- if and $v.raft.preStop.transferLeadership (gt (int .values.replicas) 1) }}
          lifecycle:
            preStop:
              exec:
                # Hand leadership to the most caught-up follower before
                # SIGTERM; a follower exits 0 at once. Not for a group of
                # one: there is nobody to hand over to. mailctl reads the TLS
                # client settings from the container's MAILGRID_TLS_*.
                command:
                  - mailctl
                  - raft
                  - transfer-leadership
                  - --address=127.0.0.1:{{ $v.ports.grpc }}
                  - --timeout={{ $v.raft.preStop.timeoutSeconds }}s
          {{- end }}
          resources:
            {{- toYaml .values.resources | nindent 12 }}
          securityContext:
            {{- toYaml $v.containerSecurityContext | nindent 12 }}
          volumeMounts:
            {{- include "mailgrid.commonVolumeMounts" . | nindent 12 }}
      volumes:
        {{- include "mailgrid.commonVolumes" . | nindent 8 }}
  volumeClaimTemplates:
    - metadata:
        name: data
        labels:
          {{- include "mailgrid.selectorLabels" . | nindent 10 }}
      spec:
        accessModes:
          {{- toYaml .values.persistence.accessModes | nindent 10 }}
        {{- with .values.persistence.storageClass }}
        storageClassName: {{ . | quote }}
        {{- end }}
        resources:
          requests:
            storage: {{ .values.persistence.size }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ .name }}
  labels:
    {{- include "mailgrid.labels" . | nindent 4 }}
spec:
  # One voter away at a time keeps a majority of 3 (or 5) during drains.
  maxUnavailable: 1
  selector:
    matchLabels:
      {{- include "mailgrid.selectorLabels" . | nindent 6 }}
{{- end -}}
