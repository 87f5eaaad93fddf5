#!/usr/bin/env bash
# Cluster-bus messages per publish on a private 6-node cluster (3 primaries,
# 1 replica each): a classic PUBLISH (which a cluster forwards to every node)
# against a sharded SPUBLISH (forwarded within the channel's shard only),
# summed over the nodes from CLUSTER INFO's
# cluster_stats_messages_{publish,publishshard}_{sent,received}.
#
# usage: tests/scripts/cluster_pubsub_messages.sh [BASE_PORT] [PUBLISHES]
# (needs redis-server and redis-cli 7; starts and stops its own nodes)
set -euo pipefail
BASE=${1:-17100}
N=${2:-1000}
SERVER=${CACHE_TESTS_SERVER:-redis-server}
DIR=$(mktemp -d)
PORTS=$(seq $((BASE + 1)) $((BASE + 6)))
cleanup() { for p in $PORTS; do [ -f "$DIR/$p.pid" ] && kill "$(cat "$DIR/$p.pid")" 2>/dev/null; done; rm -rf "$DIR"; }
trap cleanup EXIT
for p in $PORTS; do
  mkdir -p "$DIR/$p"
  (cd "$DIR/$p" && "$SERVER" --port "$p" --bind 127.0.0.1 --cluster-enabled yes \
    --cluster-node-timeout 1000 --save "" --appendonly no --daemonize yes \
    --pidfile "$DIR/$p.pid" >/dev/null)
done
sleep 1
redis-cli --cluster create $(for p in $PORTS; do echo "127.0.0.1:$p"; done) \
  --cluster-replicas 1 --cluster-yes >/dev/null
first=$((BASE + 1))
until redis-cli -p $first cluster info | grep -q cluster_state:ok; do sleep 0.2; done
sleep 2
sum() {
  local t=0 v
  for p in $PORTS; do
    v=$(redis-cli -p "$p" cluster info | tr -d '\r' | grep "^cluster_stats_messages_$1:" | cut -d: -f2 || true)
    t=$((t + ${v:-0}))
  done
  echo $t
}
ch='{ns}#invalidations'
slot=$(redis-cli -p $first cluster keyslot "$ch")
# The primary that owns the channel's slot (SPUBLISH must go there).
owner=$(redis-cli -p $first cluster nodes | while read -r _ addr flags _ _ _ _ _ ranges; do
  case $flags in *master*) for r in $ranges; do lo=${r%-*}; hi=${r#*-};
    if [ "$slot" -ge "$lo" ] && [ "$slot" -le "$hi" ]; then a=${addr%%@*}; echo "${a##*:}"; fi; done;; esac
done | head -1)
echo "channel $ch: slot $slot on the primary at port $owner; $N publishes each"
for kind in classic sharded; do
  s1=$(( $(sum publish_sent) + $(sum publishshard_sent) ))
  r1=$(( $(sum publish_received) + $(sum publishshard_received) ))
  if [ $kind = classic ]; then
    for i in $(seq "$N"); do echo "PUBLISH $ch k$i"; done | redis-cli -p $first >/dev/null
  else
    for i in $(seq "$N"); do echo "SPUBLISH $ch k$i"; done | redis-cli -p "$owner" >/dev/null
  fi
  sleep 1
  s2=$(( $(sum publish_sent) + $(sum publishshard_sent) ))
  r2=$(( $(sum publish_received) + $(sum publishshard_received) ))
  awk -v k=$kind -v s=$((s2 - s1)) -v r=$((r2 - r1)) -v n="$N" \
    'BEGIN { printf "%-8s bus messages per publish: sent %.2f, received %.2f\n", k, s / n, r / n }'
done
