#!/usr/bin/env bash
# make cluster / make cluster-stop: a real redis-server and three Granary
# members on loopback. Everything started is recorded in .cluster/pids so
# stop ends exactly that and nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.cluster
redis_port=${GRANARY_CLUSTER_REDIS_PORT:-6389}

stop() {
  [ -f "$dir/pids" ] || { echo "no cluster running (no $dir/pids)"; return 0; }
  while read -r name pid; do
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" && echo "stopped $name (pid $pid)"
    fi
  done < "$dir/pids"
  # Wait for them to go, then make sure.
  for _ in $(seq 1 100); do
    alive=0
    while read -r _ pid; do kill -0 "$pid" 2>/dev/null && alive=1; done < "$dir/pids"
    [ $alive = 0 ] && break
    sleep 0.1
  done
  while read -r name pid; do kill -0 "$pid" 2>/dev/null && kill -9 "$pid" && echo "killed $name (pid $pid)"; done < "$dir/pids"
  rm -f "$dir/pids"
}

start() {
  if [ -f "$dir/pids" ]; then
    echo "a cluster is already running ($dir/pids); run make cluster-stop first" >&2
    exit 1
  fi
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

  secret=${GRANARY_JWT_SECRET:-}
  if [ -z "$secret" ]; then
    secret=$(head -c 32 /dev/urandom | base64 | tr -d '\n/+=' | head -c 43)
    echo "$secret" > "$dir/jwt-secret"
  fi
  peers="127.0.0.1:6331,127.0.0.1:6332,127.0.0.1:6333"
  for i in 1 2 3; do
    GRANARY_JWT_SECRET="$secret" \
    GRANARY_REDIS_URL="redis://127.0.0.1:$redis_port/0" \
    GRANARY_HTTP_ADDR="127.0.0.1:808$i" \
    GRANARY_CLUSTER_PROVIDER=automanaged \
    GRANARY_CLUSTER_PORT="708$i" \
    GRANARY_AUTOMANAGED_PORT="633$i" \
    GRANARY_CLUSTER_PEERS="$peers" \
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
  echo "Granary cluster: redis on 127.0.0.1:$redis_port, logs in $dir/"
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
