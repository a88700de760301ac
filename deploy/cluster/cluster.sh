#!/usr/bin/env bash
# A gpunet network in containers on this machine: 4 validators (Malachite BFT), 2 providers and
# a tenant on a private Docker network. No registry is needed: the image is built from the local
# build (build-image.sh).
#
#   deploy/cluster/cluster.sh up                 build, write the network, start it, wait until it serves
#   deploy/cluster/cluster.sh job [SPEC]         the tenant submits SPEC (default examples/jobs/hello.yaml) and follows it
#   deploy/cluster/cluster.sh tenant ARGS...     any gpunet command as the tenant, e.g. `tenant job logs 1`;
#                                                it runs in /out, which is $GPUNET_CLUSTER_DIR/out on the host
#   deploy/cluster/cluster.sh output ID          download job ID's outputs to $GPUNET_CLUSTER_DIR/out/job-ID on the host
#   deploy/cluster/cluster.sh bench-ingress [ARGS...]
#                                                provider-0's ingress proxy beside a direct connection: runs
#                                                `gpunet bench upstream` as a service job (this image), times it
#                                                from the tenant's side with `gpunet bench ingress --direct …
#                                                --proxied … --host …` (ARGS: e.g. --json --seconds 5), cancels it;
#                                                figures in $GPUNET_CLUSTER_DIR/out/bench/ingress.json
#   deploy/cluster/cluster.sh join               start validator-4, a late joiner, by state sync (needs
#                                                GPUNET_CLUSTER_VALIDATORS=5 when the network was written)
#   deploy/cluster/cluster.sh status             height and state root of every validator
#   deploy/cluster/cluster.sh logs [SERVICE]     container logs
#   deploy/cluster/cluster.sh down               stop and remove the containers and the network (keeps the chain)
#   deploy/cluster/cluster.sh purge              down, then delete the chain, keys and provider data
#
# Environment:
#   GPUNET_BIN              gpunet binary to put in the image (default: cargo build --release, target/release/gpunet)
#   GPUNET_IMAGE            image name (default gpunet:local)
#   GPUNET_CLUSTER_DIR      the network's homes, keys and provider data (default deploy/cluster/.state)
#   GPUNET_CLUSTER_PROJECT  compose project name: containers <project>_<service>_1 (default gpunetcluster)
#   GPUNET_CLUSTER_API_PORT host port (127.0.0.1) of validator-0's API (default 18650)
#   GPUNET_CLUSTER_PARAMS   network parameters for a new chain, NAME=VALUE separated by spaces,
#                           e.g. "liveness_timeout_blocks=12 heartbeat_interval_blocks=4"
#                           (names and defaults: GET /v1/params); each becomes a `node init --param`
#   GPUNET_CLUSTER_VALIDATORS validators in the genesis of a new chain: 4 (default), or 5, where
#                           validator-4 is left out of `up` and started later by `join`
#   GPUNET_CLUSTER_BLOCK_MS least time between blocks of a new chain (default 500)
#   GPUNET_CLUSTER_POWERS   voting power of each validator of a new chain, comma-separated
#                           (default 1 each; `node init --powers`)
#   GPUNET_CLUSTER_INGRESS_PORTS  host ports provider-0 publishes services on (default 30000-30099)
#   GPUNET_BENCH_SERVICE_MS milliseconds the bench-ingress service takes per answer (default 10)
#
# provider-0 runs container jobs on this machine's engine: its containers (gpunet-lease-*) are
# removed by `down` and `purge` with the cluster.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root_dir="$(cd "$here/../.." && pwd)"
export GPUNET_IMAGE="${GPUNET_IMAGE:-gpunet:local}"
export GPUNET_CLUSTER_DIR="${GPUNET_CLUSTER_DIR:-$here/.state}"
# Absolute: provider-0's data directory is mounted at the same path inside its container.
mkdir -p "$GPUNET_CLUSTER_DIR"
GPUNET_CLUSTER_DIR="$(cd "$GPUNET_CLUSTER_DIR" && pwd)"
export GPUNET_CLUSTER_API_PORT="${GPUNET_CLUSTER_API_PORT:-18650}"
export GPUNET_UID="${GPUNET_UID:-$(id -u)}"
export GPUNET_GID="${GPUNET_GID:-$(id -g)}"
project="${GPUNET_CLUSTER_PROJECT:-gpunetcluster}"
export GPUNET_CLUSTER_NETWORK="${project}_gpunet"
export GPUNET_CLUSTER_INGRESS_PORTS="${GPUNET_CLUSTER_INGRESS_PORTS:-30000-30099}"
socket="${DOCKER_HOST:-unix:///var/run/docker.sock}"
export GPUNET_DOCKER_SOCKET="${socket#unix://}"
# provider-0 reaches the engine through its socket: with the socket's group.
export GPUNET_DOCKER_GID="$(stat -c %g "$GPUNET_DOCKER_SOCKET" 2>/dev/null || echo 0)"
# This machine's address on the cluster network (once it exists).
gateway() {
  docker network inspect -f '{{range .IPAM.Config}}{{.Gateway}}{{end}}' "$GPUNET_CLUSTER_NETWORK" 2>/dev/null || true
}
export GPUNET_CLUSTER_GATEWAY="$(gateway)"
validators="${GPUNET_CLUSTER_VALIDATORS:-4}"
# validator-4 (of 5) joins late: `up` starts and waits for the first four.
running=4
providers=2
wait_secs="${GPUNET_CLUSTER_WAIT_SECS:-180}"

die() { echo "cluster: $*" >&2; exit 1; }
say() { echo "cluster: $*" >&2; }

[[ "$validators" == 4 || "$validators" == 5 ]] \
  || die "GPUNET_CLUSTER_VALIDATORS must be 4 or 5, not $validators"

compose() {
  if command -v docker-compose >/dev/null; then
    docker-compose -p "$project" -f "$here/docker-compose.yml" "$@"
  elif docker compose version >/dev/null 2>&1; then
    docker compose -p "$project" -f "$here/docker-compose.yml" "$@"
  else
    die "neither docker-compose nor the docker compose plugin is installed"
  fi
}

# Runs gpunet in a throw-away container on the cluster's network (names resolve there). Its
# working directory /out is $GPUNET_CLUSTER_DIR/out on the host, so files it writes there stay.
in_cluster() {
  mkdir -p "$GPUNET_CLUSTER_DIR/out"
  compose run --rm -T --no-deps tenant "$@" 2> >(grep -v '^Creating .*_run' >&2)
}

# Downloads a job's outputs to the host (the providers are reachable only inside the network).
output() {
  local id="${1:?usage: $0 output JOB_ID}"
  [[ "$id" =~ ^[0-9]+$ ]] || die "job id must be a number, not $id"
  shift
  in_cluster job output "$id" --to "/out/job-$id" "$@"
  say "the files are in $GPUNET_CLUSTER_DIR/out/job-$id on this machine"
}

# provider-0's ingress beside a direct connection to the same service: `gpunet bench upstream`
# as a service job from this cluster's own image (it holds the gpunet binary), timed from the
# tenant's side of the network, then cancelled.
bench_ingress() {
  local service_ms="${GPUNET_BENCH_SERVICE_MS:-10}" spec="$GPUNET_CLUSTER_DIR/jobs/bench-ingress.yaml"
  mkdir -p "$GPUNET_CLUSTER_DIR/jobs"
  cat >"$spec" <<EOF
version: 1
name: bench-ingress
kind: service
run:
  image: $GPUNET_IMAGE
  network: egress
  command: [/bin/gpunet, bench, upstream, --listen, "0.0.0.0:8080", --service-ms, "$service_ms"]
expose: [{ port: 8080 }]
resources: { cpu: 1, memory: 256Mi, disk: 32Mi }
pricing: { max_per_hour: "1.00", deposit: "1.00" }
limits: { max_duration: 30m }
EOF
  local submitted id
  submitted="$(in_cluster job submit /jobs/bench-ingress.yaml)" \
    || die "the bench's job was not submitted (is the cluster up? $0 up)"
  id="$(sed -n 's/^job \([0-9]*\) submitted$/\1/p' <<<"$submitted")"
  [[ -n "$id" ]] || die "no job id in: $submitted"
  # Cancelled however this ends ($id expanded now: the trap runs after this function returns).
  trap "in_cluster job cancel $id >/dev/null 2>&1 || say 'job $id was not cancelled: $0 tenant job cancel $id'" EXIT
  say "job $id runs gpunet bench upstream (service $service_ms ms per answer); waiting for its endpoints"
  # `job status` prints the published port first, then the name provider-0's proxy serves:
  #   endpoint http://172.18.0.1:30000
  #   endpoint http://7-8080.apps.cluster:8080
  local deadline=$((SECONDS + wait_secs)) status direct="" name="" port=""
  while :; do
    status="$(in_cluster job status "$id" 2>/dev/null || true)"
    direct="$(sed -n 's#^ *endpoint \(http://[0-9.]*:[0-9]*\)$#\1#p' <<<"$status" | head -n 1)"
    name="$(sed -n 's#^ *endpoint http://\([0-9]*-8080\.[^: ]*\):[0-9]*$#\1#p' <<<"$status" | head -n 1)"
    port="$(sed -n 's#^ *endpoint http://[0-9]*-8080\.[^: ]*:\([0-9]*\)$#\1#p' <<<"$status" | head -n 1)"
    [[ -n "$direct" && -n "$name" && -n "$port" ]] && break
    ((SECONDS < deadline)) || die "job $id showed no endpoints after ${wait_secs}s:"$'\n'"$status"
    sleep 1
  done
  say "direct $direct, proxied http://provider-0:$port with Host $name"
  local out=(--out /out/bench/ingress.json) a
  for a in "$@"; do [[ "$a" == --out || "$a" == --out=* ]] && out=(); done
  in_cluster bench ingress --direct "$direct" --proxied "http://provider-0:$port" --host "$name" \
    "${out[@]}" "$@"
  [[ ${#out[@]} -eq 0 ]] || say "figures in $GPUNET_CLUSTER_DIR/out/bench/ingress.json on this machine"
}

binary() {
  if [[ -n "${GPUNET_BIN:-}" ]]; then
    [[ -x "$GPUNET_BIN" ]] || die "GPUNET_BIN=$GPUNET_BIN is not an executable"
    echo "$GPUNET_BIN"
    return
  fi
  say "building gpunet (cargo build --release -p gpunet)"
  (cd "$root_dir" && cargo build --release --locked -p gpunet >&2)
  echo "$root_dir/target/release/gpunet"
}

api_of() { echo "http://validator-$1:$((8650 + $1))"; }

# Waits until every validator has committed a block and both providers are registered.
wait_ready() {
  local deadline=$((SECONDS + wait_secs)) i h ready
  while :; do
    ready=0
    for ((i = 0; i < running; i++)); do
      h="$(in_cluster node status --api "$(api_of "$i")" --json 2>/dev/null | sed -n 's/.*"height":\([0-9]*\).*/\1/p')"
      [[ -n "$h" && "$h" -ge 1 ]] && ready=$((ready + 1))
    done
    local n_prov
    n_prov="$(in_cluster market providers --api "$(api_of 0)" --json 2>/dev/null | grep -o '"address"' | wc -l || true)"
    say "validators committing: $ready/$running, providers registered: ${n_prov:-0}/$providers"
    if [[ "$ready" -eq "$running" && "${n_prov:-0}" -ge "$providers" ]]; then return 0; fi
    ((SECONDS < deadline)) || die "the cluster was not ready after ${wait_secs}s; see: $0 logs"
    sleep 2
  done
}

# The cluster's network, made here rather than by compose so provider-0 can be told its gateway.
ensure_network() {
  if ! docker network inspect "$GPUNET_CLUSTER_NETWORK" >/dev/null 2>&1; then
    docker network create --driver bridge "$GPUNET_CLUSTER_NETWORK" >/dev/null
  fi
  GPUNET_CLUSTER_GATEWAY="$(gateway)"
  [[ -n "$GPUNET_CLUSTER_GATEWAY" ]] || die "the network $GPUNET_CLUSTER_NETWORK has no gateway"
  export GPUNET_CLUSTER_GATEWAY
}

# Removes provider-0's job containers (and their networks) from the engine: they outlive it.
remove_jobs() {
  local data="$GPUNET_CLUSTER_DIR/net/provider-0" ids
  [[ -d "$data" ]] || return 0
  # Its containers are those that mount something from its data directory.
  local found
  found="$(docker ps -aq --filter label=gpunet.managed=true | while read -r id; do
    docker inspect -f '{{.Id}} {{index .Config.Labels "gpunet.workload"}} {{range .Mounts}}{{.Source}} {{end}}' "$id" 2>/dev/null
  done | awk -v d="$data/" 'index($0, d) { print $1, $2 }')"
  [[ -n "$found" ]] || return 0
  ids="$(awk '{ print $1 }' <<<"$found")"
  docker rm -f $ids >/dev/null
  # A job with services has a network of its own.
  awk '{ print $2 }' <<<"$found" | sort -u | while read -r w; do
    docker network rm "gpunet-$w-net" >/dev/null 2>&1 || true
  done
}

down() {
  compose --profile tenant --profile late down --remove-orphans
  remove_jobs
  docker network rm "$GPUNET_CLUSTER_NETWORK" >/dev/null 2>&1 || true
}

up() {
  local bin
  bin="$(binary)"
  ensure_network
  "$here/build-image.sh" "$bin" "$GPUNET_IMAGE" >/dev/null
  mkdir -p "$GPUNET_CLUSTER_DIR/jobs"
  cp "$root_dir/examples/jobs/hello.yaml" "$GPUNET_CLUSTER_DIR/jobs/hello.yaml"
  if [[ ! -e "$GPUNET_CLUSTER_DIR/net/node-0" ]]; then
    local hosts
    hosts="$(for ((i = 0; i < validators; i++)); do printf 'validator-%d,' "$i"; done)"
    local params=() p
    for p in ${GPUNET_CLUSTER_PARAMS:-}; do params+=(--param "$p"); done
    [[ -n "${GPUNET_CLUSTER_POWERS:-}" ]] && params+=(--powers "$GPUNET_CLUSTER_POWERS")
    "$bin" node init --validators "$validators" --hosts "${hosts%,}" --providers "$providers" \
      --block-ms "${GPUNET_CLUSTER_BLOCK_MS:-500}" \
      --chain-id gpunet-cluster --out "$GPUNET_CLUSTER_DIR/net" "${params[@]}" >&2
  else
    say "reusing the network in $GPUNET_CLUSTER_DIR/net (purge to start a fresh chain)"
  fi
  compose up -d --remove-orphans >&2
  wait_ready
  say "up: validator-0's API is http://127.0.0.1:$GPUNET_CLUSTER_API_PORT; submit a job with: $0 job"
}

job() {
  local spec="${1:-$root_dir/examples/jobs/hello.yaml}"
  [[ -f "$spec" ]] || die "no job spec at $spec"
  mkdir -p "$GPUNET_CLUSTER_DIR/jobs"
  local name
  name="$(basename "$spec")"
  cp "$spec" "$GPUNET_CLUSTER_DIR/jobs/$name"
  shift || true
  in_cluster job submit "/jobs/$name" --wait "$@"
}

# Starts validator-4, which joins the running network by state sync.
join() {
  [[ -e "$GPUNET_CLUSTER_DIR/net/node-4" ]] \
    || die "this network has no validator-4: write it with GPUNET_CLUSTER_VALIDATORS=5 (purge, then up)"
  compose --profile late up -d --no-deps validator-4 >&2
  say "validator-4 is syncing state from the others: $0 logs validator-4"
}

status() {
  local i
  for ((i = 0; i < validators; i++)); do
    in_cluster node status --api "$(api_of "$i")" "$@" || echo "validator-$i: not answering"
  done
}

case "${1:-}" in
  up) up ;;
  job) shift; job "$@" ;;
  join) join ;;
  status) shift; status "$@" ;;
  tenant) shift; in_cluster "$@" ;;
  output) shift; output "$@" ;;
  bench-ingress) shift; bench_ingress "$@" ;;
  logs) shift; compose logs --no-color "$@" ;;
  down) down ;;
  purge)
    down
    # Only what `up` wrote, in case GPUNET_CLUSTER_DIR points somewhere that holds more.
    rm -rf "$GPUNET_CLUSTER_DIR/net" "$GPUNET_CLUSTER_DIR/jobs" "$GPUNET_CLUSTER_DIR/out"
    rmdir "$GPUNET_CLUSTER_DIR" 2>/dev/null || true
    ;;
  *) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 2 ;;
esac
