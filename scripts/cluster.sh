#!/usr/bin/env bash
# make cluster / make cluster-stop: a real redis-server and three Granary
# members on loopback; with PROVIDER=etcd also a one-member etcd, through
# which the members find each other (PROVIDER=automanaged, the default:
# static peers). Everything started is recorded in .cluster/pids so stop
# ends exactly that and nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.cluster
redis_port=${GRANARY_CLUSTER_REDIS_PORT:-6389}
etcd_port=${GRANARY_CLUSTER_ETCD_PORT:-2389}
etcd_peer_port=${GRANARY_CLUSTER_ETCD_PEER_PORT:-2390}
provider=${PROVIDER:-automanaged}

# stop_matching NAME-GLOB: SIGTERM the recorded processes whose name
# matches, wait up to 10 s for them to go, then SIGKILL what is left.
stop_matching() {
  local glob=$1 name pid alive
  while read -r name pid; do
    # shellcheck disable=SC2254
    case $name in $glob) ;; *) continue ;; esac
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" && echo "stopped $name (pid $pid)"
    fi
  done < "$dir/pids"
  for _ in $(seq 1 100); do
    alive=0
    while read -r name pid; do
      # shellcheck disable=SC2254
      case $name in $glob) kill -0 "$pid" 2>/dev/null && alive=1 ;; esac
    done < "$dir/pids"
    [ $alive = 0 ] && break
    sleep 0.1
  done
  while read -r name pid; do
    # shellcheck disable=SC2254
    case $name in $glob) kill -0 "$pid" 2>/dev/null && kill -9 "$pid" && echo "killed $name (pid $pid)" ;; esac
  done < "$dir/pids"
  return 0
}

stop() {
  [ -f "$dir/pids" ] || { echo "no cluster running (no $dir/pids)"; return 0; }
  # Members first, while etcd and Redis still answer: a member leaving
  # gracefully revokes its etcd lease and finishes its journal writes.
  stop_matching 'member*'
  stop_matching '*'
  rm -f "$dir/pids"
}

start_etcd() {
  command -v etcd >/dev/null || {
    echo "etcd is not installed (Debian: apt-get install -y etcd-server)" >&2
    exit 1
  }
  # Membership is all etcd holds here, and leases of members long gone
  # would linger: start from an empty data dir.
  rm -rf "$dir/etcd"
  local client="http://127.0.0.1:$etcd_port" peer="http://127.0.0.1:$etcd_peer_port"
  etcd --name granary-cluster --data-dir "$PWD/$dir/etcd" \
    --listen-client-urls "$client" --advertise-client-urls "$client" \
    --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
    --initial-cluster "granary-cluster=$peer" --initial-cluster-state new \
    --logger zap --log-outputs stderr --log-level warn \
    > "$dir/etcd.log" 2>&1 < /dev/null &
  echo "etcd $!" >> "$dir/pids"
  for _ in $(seq 1 100); do
    curl -fs --max-time 1 "$client/health" 2>/dev/null | grep -q '"health":"true"' && return 0
    sleep 0.1
  done
  echo "etcd did not become healthy on $client in 10 s; see $dir/etcd.log" >&2
  exit 1
}

start() {
  if [ -f "$dir/pids" ]; then
    echo "a cluster is already running ($dir/pids); run make cluster-stop first" >&2
    exit 1
  fi
  case $provider in
    automanaged | etcd) ;;
    *) echo "PROVIDER=$provider: want automanaged or etcd" >&2; exit 2 ;;
  esac
  command -v redis-server >/dev/null || {
    echo "redis-server is not installed (Debian: apt-get install -y redis-server)" >&2
    exit 1
  }
  mkdir -p "$dir/redis"
  go build -o "$dir/granary" ./cmd/granary
  : > "$dir/pids"
  redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$PWD/$dir/redis" --save '' \
    --appendonly yes --appendfsync "${GRANARY_REDIS_FSYNC:-everysec}" \
    --logfile "$PWD/$dir/redis.log" > /dev/null 2>&1 &
  echo "redis $!" >> "$dir/pids"
  for _ in $(seq 1 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  if [ "$provider" = etcd ]; then
    start_etcd
  fi

  secret=${GRANARY_JWT_SECRET:-}
  if [ -z "$secret" ]; then
    secret=$(head -c 32 /dev/urandom | base64 | tr -d '\n/+=' | head -c 43)
    echo "$secret" > "$dir/jwt-secret"
  fi
  peers="127.0.0.1:6331,127.0.0.1:6332,127.0.0.1:6333"
  for i in 1 2 3; do
    if [ "$provider" = etcd ]; then
      membership=(GRANARY_CLUSTER_PROVIDER=etcd GRANARY_ETCD_ENDPOINTS="http://127.0.0.1:$etcd_port")
    else
      membership=(GRANARY_CLUSTER_PROVIDER=automanaged GRANARY_AUTOMANAGED_PORT="633$i" GRANARY_CLUSTER_PEERS="$peers")
    fi
    env GRANARY_JWT_SECRET="$secret" \
      GRANARY_REDIS_URL="redis://127.0.0.1:$redis_port/0" \
      GRANARY_HTTP_ADDR="127.0.0.1:808$i" \
      GRANARY_CLUSTER_PORT="708$i" \
      "${membership[@]}" \
      "$dir/granary" node > "$dir/member$i.out" 2> "$dir/member$i.log" < /dev/null &
    echo "member$i $!" >> "$dir/pids"
  done
  for i in 1 2 3; do
    for _ in $(seq 1 100); do
      curl -fs "http://127.0.0.1:808$i/ready" >/dev/null 2>&1 && break
      sleep 0.2
    done
  done
  token=$(GRANARY_JWT_SECRET="$secret" "$dir/granary" token --sub admin --roles admin)
  if [ "$provider" = etcd ]; then
    echo "Granary cluster: redis on 127.0.0.1:$redis_port, membership through etcd on http://127.0.0.1:$etcd_port, logs in $dir/"
  else
    echo "Granary cluster: redis on 127.0.0.1:$redis_port, automanaged membership, logs in $dir/"
  fi
  for i in 1 2 3; do
    status=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:808$i/ready" || true)
    echo "  member$i: http://127.0.0.1:808$i (ready: $status)"
  done
  echo "  admin token: $token"
  echo "  try: curl -s -H 'Authorization: Bearer $token' http://127.0.0.1:8081/api/v1/cluster/members"
  echo "  stop with: make cluster-stop"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
