#!/usr/bin/env bash
# imrelay beside Kamailio on this machine: the same workloads from the same generator
# (`imrelay bench`, open loop, latency from the intended send time), alternating runs, each
# server on CPU 0 and the generator on CPU 1. Writes benches/peers/results/: the raw lines,
# .hgrm latency files, table.md (ratios imrelay/Kamailio) and ramp.svg (p99 latency vs offered
# load). Usage: benches/peers/run.sh   (ROUNDS=3 STEP_SECS=3 by default)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-$ROOT/benches/peers/results}
ROUNDS=${ROUNDS:-3}
STEP_SECS=${STEP_SECS:-3}
IMRELAY_PORT=${IMRELAY_PORT:-15060}
KAMAILIO_PORT=${KAMAILIO_PORT:-25060}

if ! command -v kamailio >/dev/null || ! dpkg -s kamailio-sqlite-modules >/dev/null 2>&1 \
    || ! command -v sqlite3 >/dev/null || ! command -v python3 >/dev/null; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y kamailio kamailio-sqlite-modules sqlite3 python3
fi
# The package's own service (stock config on 5060) must not compete for the CPUs.
systemctl stop kamailio 2>/dev/null || true
for port in "$IMRELAY_PORT" "$KAMAILIO_PORT"; do
    if ss -Hulpn "sport = :$port" | grep -q .; then
        echo "run.sh: UDP port $port is in use (a server left from an earlier run?)" >&2
        ss -Hulpn "sport = :$port" >&2
        exit 1
    fi
done
(cd "$ROOT" && cargo build --release --quiet)
B=$ROOT/target/release/imrelay
WORK=$(mktemp -d)
mkdir -p "$OUT"
rm -f "$OUT"/*.hgrm "$OUT/raw.txt"
PIDS=()
cleanup() {
    # Each server runs in its own process group (setsid): the group goes, workers and all.
    for p in "${PIDS[@]}"; do kill -- "-$p" 2>/dev/null || true; done
    sleep 1
    for p in "${PIDS[@]}"; do kill -9 -- "-$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "== machine: $(nproc) CPUs, $(uname -r); $($B --version 2>/dev/null || echo imrelay); $(kamailio -v | head -1)" | tee "$OUT/raw.txt"

# Kamailio: registrar + tm + msilo on SQLite (WAL: its best setting here), 2 workers, 1 GiB
# of shared memory (tm keeps finished transactions 5 s).
sqlite3 "$WORK/msilo.db" < /usr/share/kamailio/db_sqlite/standard-create.sql
sqlite3 "$WORK/msilo.db" < /usr/share/kamailio/db_sqlite/msilo-create.sql
sqlite3 "$WORK/msilo.db" "PRAGMA journal_mode=WAL;" >/dev/null
setsid taskset -c 0 kamailio -f "$ROOT/benches/peers/kamailio.cfg" -DD -E -m 1024 -M 16 \
    -Y "$WORK" -w "$WORK" -P "$WORK/kamailio.pid" \
    -A "DBURL=\"sqlite:///$WORK/msilo.db\"" -A "LISTEN=udp:127.0.0.1:$KAMAILIO_PORT" \
    -A "WORKERS=2" >"$WORK/kamailio.log" 2>&1 &
PIDS+=($!)
# imrelay: one shard on CPU 0 (the generator has CPU 1), the embedded default.
setsid taskset -c 0 "$B" serve --cores 1 --sip-addr "127.0.0.1:$IMRELAY_PORT" --msrp-port 0 \
    --state-dir "$WORK/imrelay" >"$WORK/imrelay.log" 2>&1 &
PIDS+=($!)
IMRELAY_PID=$!
for _ in $(seq 1 100); do
    [ -s "$WORK/kamailio.pid" ] && grep -q "ready:" "$WORK/imrelay.log" && break
    sleep 0.1
done
if ! kill -0 "$IMRELAY_PID" 2>/dev/null || ! grep -q "ready:" "$WORK/imrelay.log" \
    || ! [ -s "$WORK/kamailio.pid" ]; then
    echo "run.sh: a server did not start" >&2
    tail -5 "$WORK/imrelay.log" "$WORK/kamailio.log" >&2
    exit 1
fi
KAMAILIO_PID=$(cat "$WORK/kamailio.pid")
echo "== imrelay pid $IMRELAY_PID, kamailio pid $KAMAILIO_PID" | tee -a "$OUT/raw.txt"

run() { # server scenario args...
    local server=$1 scenario=$2
    shift 2
    local port pid
    if [ "$server" = imrelay ]; then port=$IMRELAY_PORT pid=$IMRELAY_PID; else port=$KAMAILIO_PORT pid=$KAMAILIO_PID; fi
    "$B" bench "$scenario" --server "127.0.0.1:$port" --cpu 1 --server-pid "$pid" "$@" \
        | sed "s/^/$server /" | tee -a "$OUT/raw.txt"
}

# The same offered load on both (CPU per operation, p99), alternating, ROUNDS times.
for round in $(seq 1 "$ROUNDS"); do
    for server in imrelay kamailio; do
        run "$server" register --rate 3000 --count 30000 --run "r$round$server" \
            --hgrm "$OUT/$server-register-$round.hgrm"
        run "$server" message-online --rate 3000 --count 30000 --users 100 \
            --run "m$round$server" --hgrm "$OUT/$server-message-online-$round.hgrm"
        run "$server" message-offline --rate 200 --count 2000 --run "o$round$server" \
            --hgrm "$OUT/$server-message-offline-$round.hgrm"
    done
done
# The highest clean rate of each (ramps of STEP_SECS a step).
for server in imrelay kamailio; do
    run "$server" register --ramp --rate 2000 --step-secs "$STEP_SECS" --run "R$server"
    run "$server" message-online --ramp --rate 2000 --users 100 --step-secs "$STEP_SECS" --run "M$server"
    run "$server" message-offline --ramp --rate 100 --step-secs "$STEP_SECS" --max-rate 50000 --run "O$server"
done
python3 "$ROOT/benches/peers/report.py" "$OUT"
