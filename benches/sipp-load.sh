#!/bin/bash
# SIPp load against a release build of imrelay on loopback, for BENCHMARKS.md.
#
#   benches/sipp-load.sh register|relay|offline|call CORES CALLS RATE
#
# register: each call registers a new user and unregisters it (2 REGISTER transactions).
# relay:    MESSAGE from a SIPp UAC through imrelay to a registered SIPp UAS (200 back).
# offline:  MESSAGE to a user who is not registered (a new one per call): kept, 202.
# call:     INVITE/180/200/ACK/BYE/200 from a SIPp UAC through imrelay (record-routing
#           proxy) to a registered SIPp UAS: 3 transactions and 7 messages relayed per call.
#
# Needs `sipp` (Debian: sip-tester) and python3. Uses 127.0.0.1:5070 (server), 5091 (UAC),
# 5092 (UAS) and a fresh state directory under target/. Every run is bounded by CALLS.
set -euo pipefail
mode=$1 cores=$2 calls=$3 rate=$4
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/target/release/imrelay
work=$root/target/sipp-load
[ -x "$bin" ] || (cd "$root" && cargo build --release)
rm -rf "$work" && mkdir -p "$work/state"
"$bin" serve --sip-addr 127.0.0.1:5070 --state-dir "$work/state" --cores "$cores" >"$work/server.log" 2>&1 &
server=$!
trap 'kill -TERM $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "imrelay: ready:" "$work/server.log" && break; sleep 0.1; done
extra=()
case $mode in
  register) scenario=register.xml ;;
  offline) scenario=message_offline.xml ;;
  relay|call)
    if [ "$mode" = relay ]; then scenario=message_uac.xml uas=message_uas.xml
    else scenario=call_uac.xml uas=call_uas.xml; fi
    extra=(-s uas)
    sipp -sf "$root/tests/sipp/$uas" -t u1 -i 127.0.0.1 -p 5092 -m "$calls" \
      -nostdin -timeout 300 >"$work/uas.out" 2>&1 &
    python3 "$root/benches/sip-register.py" 5070 uas 127.0.0.1:5092
    ;;
  *) echo "mode: register|relay|offline|call" >&2; exit 2 ;;
esac
t0=$(date +%s.%N)
sipp 127.0.0.1:5070 -sf "$root/tests/sipp/$scenario" "${extra[@]}" -t u1 -i 127.0.0.1 -p 5091 \
  -m "$calls" -r "$rate" -l 2000 -nostdin -timeout 300 >"$work/sipp.out" 2>&1 || true
t1=$(date +%s.%N)
wait %2 2>/dev/null || true
kill -TERM $server; wait $server || true
trap - EXIT
ok=$(awk -F'|' '/Successful call/ {gsub(/ /, "", $3); print $3}' "$work/sipp.out")
failed=$(awk -F'|' '/Failed call/ {gsub(/ /, "", $3); print $3}' "$work/sipp.out")
echo "$mode cores=$cores offered=$rate/s calls=$calls ok=$ok failed=$failed" \
  "achieved=$(echo "$ok / ($t1 - $t0)" | bc)/s"
grep "imrelay: stopped:" "$work/server.log"
