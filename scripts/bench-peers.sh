#!/usr/bin/env bash
# Every figure of BENCHMARKS.md in one run, Hallmark side by side with its
# peers on this machine:
#   - the physical limit: `openssl speed ecdsap256` and ring's own rates
#     (hallmark-bench crypto);
#   - cfssl from Debian (golang-cfssl): `cfssl serve` with its sqlite certdb
#     in WAL mode, signing the same CSRs at the same concurrency;
#   - `openssl ocsp` as a responder (signs each answer) and `cfssl ocspserve`
#     (serves pre-signed answers), against Hallmark's OCSP endpoint;
#   - Verify, the enrollment storm, the store at 1,000,000 devices and CRLs.
# Peers listen on loopback only (openssl ocsp on all interfaces: it cannot
# bind one) and are stopped on exit.
#
#   scripts/bench-peers.sh [QUICK]   # QUICK=1: small sizes, to try it out
set -euo pipefail
cd "$(dirname "$0")/.."

quick="${1:-0}"
if [ "$quick" = 1 ]; then
    devices=2000 storm=1000 store=100000 requests=5000 crl=10000,100000
else
    devices=20000 storm=10000 store=1000000 requests=50000 crl=10000,100000,1000000
fi
stations=4

need=()
command -v cfssl >/dev/null || need+=(golang-cfssl)
command -v sqlite3 >/dev/null || need+=(sqlite3)
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}"
fi
cargo build --release --locked --bins -p hallmark-provisioner
bench=target/release/hallmark-bench

work=$(mktemp -d /tmp/hallmark-peers-XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    exit 1
}

echo "== machine"
lscpu | grep -E "Model name|^CPU\(s\)" || true
uname -r
cfssl version | head -1
openssl version

echo "== the physical limit: ECDSA P-256 sign/verify"
openssl speed -seconds 3 ecdsap256 2>/dev/null | tail -2
openssl speed -seconds 3 -multi "$(nproc)" ecdsap256 2>/dev/null | tail -1 | sed 's/^/multi: /'
$bench crypto --seconds 3

echo "== cfssl: a CA, its sqlite certdb in WAL mode, an OCSP responder"
(
    cd "$work"
    echo '{"CN":"Bench CA","key":{"algo":"ecdsa","size":256},"names":[{"O":"Bench"}]}' > ca.json
    cfssl genkey -initca ca.json 2>/dev/null | cfssljson -bare ca
    echo '{"CN":"OCSP responder","key":{"algo":"ecdsa","size":256}}' > ocsp.json
    echo '{"signing":{"default":{"expiry":"8760h","usages":["digital signature","ocsp signing"]}}}' > ocsp-config.json
    cfssl gencert -ca ca.pem -ca-key ca-key.pem -config ocsp-config.json ocsp.json 2>/dev/null | cfssljson -bare ocsp
    echo '{"signing":{"default":{"expiry":"8760h","usages":["digital signature","client auth"]}}}' > config.json
    # cfssl's certdb schema (certdb/sqlite migrations), WAL mode.
    sqlite3 certs.db <<'SQL'
PRAGMA journal_mode=WAL;
CREATE TABLE certificates (
  serial_number blob NOT NULL, authority_key_identifier blob NOT NULL,
  ca_label blob, status blob NOT NULL, reason int, expiry timestamp,
  revoked_at timestamp, pem blob NOT NULL,
  PRIMARY KEY(serial_number, authority_key_identifier));
CREATE TABLE ocsp_responses (
  serial_number blob NOT NULL, authority_key_identifier blob NOT NULL,
  body blob NOT NULL, expiry timestamp,
  PRIMARY KEY(serial_number, authority_key_identifier));
SQL
    echo '{"driver":"sqlite3","data_source":"certs.db"}' > db.json
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout leaf.key -subj /CN=device -out leaf.csr 2>/dev/null
)
cfssl_port=$(port)
(cd "$work" && exec cfssl serve -address 127.0.0.1 -port "$cfssl_port" -ca ca.pem \
    -ca-key ca-key.pem -db-config db.json -config config.json -loglevel 2 \
    > cfssl-serve.log 2>&1) &
pids+=($!)
wait_port "$cfssl_port"
(
    cd "$work"
    python3 -c 'import json,sys; print(json.dumps({"certificate_request": open("leaf.csr").read()}))' > sign.json
    python3 - "$cfssl_port" <<'PY' > leaf.pem
import json, sys, urllib.request
body = open("sign.json", "rb").read()
r = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/api/v1/cfssl/sign", body)
print(json.load(r)["result"]["certificate"])
PY
    cfssl ocspsign -ca ca.pem -responder ocsp.pem -responder-key ocsp-key.pem \
        -cert leaf.pem -status good 2>/dev/null \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["ocspResponse"])' > responses
    serial=$(openssl x509 -in leaf.pem -noout -serial | cut -d= -f2)
    end=$(date -u -d "$(openssl x509 -in leaf.pem -noout -enddate | cut -d= -f2)" +%y%m%d%H%M%SZ)
    printf 'V\t%s\t\t%s\tunknown\t/CN=device\n' "$end" "$serial" > index.txt
    openssl ocsp -issuer ca.pem -cert leaf.pem -reqout req-nonce.der >/dev/null 2>&1
    openssl ocsp -issuer ca.pem -cert leaf.pem -no_nonce -reqout req-no-nonce.der >/dev/null 2>&1
)
ocspserve_port=$(port)
(cd "$work" && exec cfssl ocspserve -address 127.0.0.1 -port "$ocspserve_port" \
    -responses responses -loglevel 2 > ocspserve.log 2>&1) &
pids+=($!)
openssl_port=$(port)
(cd "$work" && exec openssl ocsp -index index.txt -port "$openssl_port" -rsigner ocsp.pem \
    -rkey ocsp-key.pem -CA ca.pem -nrequest 1000000000 > openssl-ocsp.log 2>&1) &
pids+=($!)
# Both must answer "good", verified by openssl, before they are measured.
# (No bare TCP probe: `openssl ocsp` as a responder spins on a connection
# closed without a request.)
ocsp_good() { # PORT [-no_nonce]
    local out
    out=$(timeout 5 openssl ocsp -issuer "$work/ca.pem" -cert "$work/leaf.pem" \
        -url "http://127.0.0.1:$1/" -CAfile "$work/ca.pem" -VAfile "$work/ocsp.pem" "${@:2}" 2>&1) || true
    [[ "$out" == *": good"* ]]
}
for target in "$openssl_port" "$ocspserve_port -no_nonce"; do
    ok=0
    for _ in $(seq 1 50); do
        # shellcheck disable=SC2086
        if ocsp_good $target; then ok=1; break; fi
        sleep 0.2
    done
    [ "$ok" = 1 ] || { echo "OCSP responder on $target never answered good" >&2; exit 1; }
done

echo "== provisioning: Hallmark vs cfssl+sqlite, $stations stations"
$bench provision --stations "$stations" --devices "$devices" --cfssl "127.0.0.1:$cfssl_port"
fsyncs_note="cfssl's certdb: $(sqlite3 "$work/certs.db" 'select count(*) from certificates') certificates recorded"
echo "$fsyncs_note"

echo "== OCSP: Hallmark vs openssl ocsp vs cfssl ocspserve"
$bench ocsp --requests "$requests" --concurrency 8 \
    --peer "openssl ocsp (signs each)=127.0.0.1:$openssl_port/=$work/req-nonce.der" \
    --peer "cfssl ocspserve (pre-signed)=127.0.0.1:$ocspserve_port/=$work/req-no-nonce.der"

echo "== Verify"
$bench verify --requests "$requests" --concurrency 8

echo "== enrollment storm"
$bench enroll-storm --devices "$storm"

echo "== store scale"
$bench store --devices "$store"

echo "== CRLs"
$bench crl --entries "$crl"
