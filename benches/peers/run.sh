#!/usr/bin/env bash
# imrelay beside Kamailio on this machine: the same workloads from the same generator
# (`imrelay bench`, open loop, latency from the intended send time), alternating runs, each
# server on CPU 0 and the generator on CPU 1. Writes benches/peers/results/: the raw lines,
# .hgrm latency files, table.md (ratios imrelay/Kamailio) and ramp.svg (p99 latency vs offered
# load). The SIP workloads are also driven by SIPp (its scenarios in tests/sipp/), for the CPU
# per call and the failures under a peer's own generator (SIPp's latency figures are too coarse
# here). MSRP: both relay chunks between two RFC 4976 clients (`imrelay bench msrp-auth`).
# Usage: benches/peers/run.sh   (ROUNDS=5 STEP_SECS=3 by default)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-$ROOT/benches/peers/results}
ROUNDS=${ROUNDS:-5}
STEP_SECS=${STEP_SECS:-3}
PAUSE_SECS=${PAUSE_SECS:-35}
IMRELAY_PORT=${IMRELAY_PORT:-15060}
KAMAILIO_PORT=${KAMAILIO_PORT:-25060}
IMRELAY_MSRP_PORT=${IMRELAY_MSRP_PORT:-12855}
KAMAILIO_MSRP_PORT=${KAMAILIO_MSRP_PORT:-22855}
SIPP_PORT=${SIPP_PORT:-35091}
SIPP_UAS_PORT=${SIPP_UAS_PORT:-35092}

if ! command -v kamailio >/dev/null || ! dpkg -s kamailio-sqlite-modules >/dev/null 2>&1 \
    || ! command -v sqlite3 >/dev/null || ! command -v python3 >/dev/null \
    || ! command -v sipp >/dev/null; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y kamailio kamailio-sqlite-modules sqlite3 \
        python3 sip-tester
fi
# The package's own service (stock config on 5060) must not compete for the CPUs.
systemctl stop kamailio 2>/dev/null || true
for port in "$IMRELAY_PORT" "$KAMAILIO_PORT" "$SIPP_PORT" "$SIPP_UAS_PORT" \
    "$IMRELAY_MSRP_PORT" "$KAMAILIO_MSRP_PORT"; do
    if ss -Htulpn "sport = :$port" | grep -q .; then
        echo "run.sh: port $port is in use (a server left from an earlier run?)" >&2
        ss -Htulpn "sport = :$port" >&2
        exit 1
    fi
done
(cd "$ROOT" && cargo build --release --quiet)
B=$ROOT/target/release/imrelay
WORK=$(mktemp -d)
mkdir -p "$OUT"
rm -f "$OUT"/*.hgrm "$OUT/raw.txt"
PIDS=()
UAS_PID=
cleanup() {
    if [ -n "$UAS_PID" ]; then kill "$UAS_PID" 2>/dev/null || true; fi
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
    -A "WORKERS=2" -A "MSRP_LISTEN=tcp:127.0.0.1:$KAMAILIO_MSRP_PORT" >"$WORK/kamailio.log" 2>&1 &
PIDS+=($!)
# imrelay: one shard on CPU 0 (the generator has CPU 1), the embedded default and a relay
# client's credentials (benches/peers/imrelay.toml).
setsid taskset -c 0 "$B" serve --cores 1 --config "$ROOT/benches/peers/imrelay.toml" \
    --sip-addr "127.0.0.1:$IMRELAY_PORT" --msrp-port "$IMRELAY_MSRP_PORT" \
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
    local port pid msrp
    if [ "$server" = imrelay ]; then port=$IMRELAY_PORT pid=$IMRELAY_PID msrp=$IMRELAY_MSRP_PORT
    else port=$KAMAILIO_PORT pid=$KAMAILIO_PID msrp=$KAMAILIO_MSRP_PORT; fi
    "$B" bench "$scenario" --server "127.0.0.1:$port" --msrp "127.0.0.1:$msrp" --cpu 1 \
        --server-pid "$pid" "$@" | sed "s/^/${LABEL:-$server} /" | tee -a "$OUT/raw.txt"
}

tree_cpu() { # pid: CPU seconds of the process and every process below it
    python3 - "$1" <<'PY'
import os, sys
hz = os.sysconf("SC_CLK_TCK")
procs = {}
for p in os.listdir("/proc"):
    if p.isdigit():
        try:
            f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        procs[int(p)] = (int(f[1]), int(f[11]) + int(f[12]))
todo, total = [int(sys.argv[1])], 0
while todo:
    p = todo.pop()
    total += procs.get(p, (0, 0))[1]
    todo += [c for c, (pp, _) in procs.items() if pp == p]
print(total / hz)
PY
}


# SIPp (sip-tester) on CPU 1 drives a SIP workload: CALLS calls at RATE/s; prints the calls
# that succeeded and failed and the server's CPU per call. relay: MESSAGE to a SIPp UAS
# registered as uas@localhost (the UAS shares CPU 1).
sipp_run() { # server mode calls rate
    local server=$1 mode=$2 calls=$3 rate=$4 port pid uas=""
    if [ "$server" = imrelay ]; then port=$IMRELAY_PORT pid=$IMRELAY_PID; else port=$KAMAILIO_PORT pid=$KAMAILIO_PID; fi
    local scenario extra=()
    case $mode in
        register) scenario=register.xml ;;
        offline) scenario=message_offline.xml ;;
        relay)
            scenario=message_uac.xml extra=(-s uas)
            taskset -c 1 sipp -sf "$ROOT/tests/sipp/message_uas.xml" -t u1 -i 127.0.0.1 \
                -p "$SIPP_UAS_PORT" -nostdin -timeout 300 >"$WORK/uas.out" 2>&1 &
            uas=$! UAS_PID=$!
            python3 "$ROOT/benches/sip-register.py" "$port" uas "127.0.0.1:$SIPP_UAS_PORT"
            ;;
    esac
    local cpu0 t0 t1 cpu1
    cpu0=$(tree_cpu "$pid") t0=$(date +%s.%N)
    taskset -c 1 sipp "127.0.0.1:$port" -sf "$ROOT/tests/sipp/$scenario" "${extra[@]}" -t u1 \
        -i 127.0.0.1 -p "$SIPP_PORT" -m "$calls" -r "$rate" -l 5000 -nostdin -timeout 120 \
        >"$WORK/sipp.out" 2>&1 || true
    t1=$(date +%s.%N) cpu1=$(tree_cpu "$pid")
    if [ -n "$uas" ]; then
        kill "$uas" 2>/dev/null || true
        wait "$uas" 2>/dev/null || true
        UAS_PID=
    fi
    local ok failed retrans
    ok=$(awk -F'|' '/Successful call/ {gsub(/ /, "", $3); print $3}' "$WORK/sipp.out")
    failed=$(awk -F'|' '/Failed call/ {gsub(/ /, "", $3); print $3}' "$WORK/sipp.out")
    # SIPp's retransmissions of its requests: the Retrans column of its last message table.
    retrans=$(awk '/Messages +Retrans/ {n = 0} / ---------->/ {n += $4} END {print n + 0}' \
        "$WORK/sipp.out")
    python3 -c "import sys; s,m,c,r,ok,f,rt,t0,t1,c0,c1=sys.argv[1:]; ok=int(ok or 0); \
print(f'sipp {s} {m}: {c} calls at {r}/s, {ok} ok, {int(f or 0)} failed, {rt or 0} retransmissions in {float(t1)-float(t0):.2f} s; server CPU {float(c1)-float(c0):.2f} s ({(float(c1)-float(c0))*1e6/max(ok,1):.1f} µs per call)')" \
        "$server" "$mode" "$calls" "$rate" "$ok" "$failed" "$retrans" "$t0" "$t1" "$cpu0" "$cpu1" \
        | tee -a "$OUT/raw.txt"
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
        # 8 KiB chunks: Kamailio's msrp module refuses chunks of about 11 KiB and more.
        run "$server" msrp-auth --size 8192 --rate 5000 --count 25000 --run "c$round$server" \
            --hgrm "$OUT/$server-msrp-auth-$round.hgrm"
        # SIPp: REGISTER + unREGISTER per call, MESSAGE relayed to its UAS, MESSAGE stored.
        sipp_run "$server" register 15000 1500
        sipp_run "$server" relay 15000 3000
        sipp_run "$server" offline 1000 200
    done
    # What Kamailio cannot relay: 64 KiB chunks (imrelay only; bytes per CPU against 8 KiB).
    LABEL=imrelay64k run imrelay msrp-auth --size 65536 --rate 1000 --count 5000 --run "C${round}imrelay64k"
done
# The highest clean rate of each (ramps of STEP_SECS a step). A ramp ends in overload, and
# what an overloaded SIP server still holds (answered transactions, kept 32 s for Timer J)
# would weigh on the next ramp: MSRP first, and a pause after each SIP ramp. Offline last: the
# stores' background work after tens of thousands of new recipients outlasts any pause.
for server in imrelay kamailio; do
    run "$server" msrp-auth --ramp --size 8192 --rate 4000 --step-secs "$STEP_SECS" --run "C$server"
    run "$server" register --ramp --rate 2000 --step-secs "$STEP_SECS" --run "R$server"
    sleep "$PAUSE_SECS"
    run "$server" message-online --ramp --rate 2000 --users 100 --step-secs "$STEP_SECS" --run "M$server"
    sleep "$PAUSE_SECS"
    run "$server" message-offline --ramp --rate 20 --step-secs "$STEP_SECS" --max-rate 50000 --run "O$server"
    sleep "$PAUSE_SECS"
done
python3 "$ROOT/benches/peers/report.py" "$OUT"
