#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine, or fails loudly.
#   - openssl CLI          (openssl verify / ocsp interop checks)
#   - mosquitto            (a real MQTT broker enforcing Hallmark's CRL)
#   - pkilint              (RFC 5280 linter, from PyPI into ./.venv)
#   - grpcio, grpcio-tools (the Python gRPC client test, into ./.venv)
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v openssl >/dev/null || need_apt+=(openssl)
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v mosquitto_pub >/dev/null || need_apt+=(mosquitto-clients)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing with apt-get: ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
if ! .venv/bin/python -c "import pkilint, grpc, grpc_tools" 2>/dev/null; then
  echo "installing pkilint, grpcio and grpcio-tools into .venv"
  .venv/bin/pip install --quiet --disable-pip-version-check pkilint grpcio grpcio-tools
fi
.venv/bin/python -c "import pkilint, grpc, grpc_tools" || { echo "FATAL: Python test packages missing" >&2; exit 1; }

for tool in openssl /usr/sbin/mosquitto mosquitto_pub .venv/bin/lint_pkix_cert .venv/bin/lint_crl .venv/bin/lint_ocsp_response; do
  command -v "$tool" >/dev/null || { echo "FATAL: $tool is missing after install" >&2; exit 1; }
done
echo "test dependencies ready: $(openssl version), pkilint $(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("pkilint"))')"
