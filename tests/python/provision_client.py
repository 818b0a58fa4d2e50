#!/usr/bin/env python3
"""Provisions one device through Hallmark's gRPC API from Python (grpcio),
with stubs generated from proto/ at run time: the contract works from
another language, as factory tooling often is Python.

usage: provision_client.py HOST:PORT STATION_DIR MODEL SERIAL CSR_DER_FILE OUT_DIR
Prints a JSON summary; exits non-zero on any error.
"""
import json
import os
import sys
import tempfile

import grpc
from grpc_tools import protoc


def generate_stubs(proto_root: str) -> str:
    out = tempfile.mkdtemp(prefix="hallmark-py-")
    rc = protoc.main([
        "protoc",
        f"-I{proto_root}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        os.path.join(proto_root, "hallmark/v1/hallmark.proto"),
    ])
    if rc != 0:
        sys.exit(f"protoc failed with {rc}")
    sys.path.insert(0, out)
    return out


def main() -> None:
    target, station_dir, model, serial, csr_file, out_dir = sys.argv[1:7]
    proto_root = os.path.join(os.path.dirname(__file__), "..", "..", "proto", "proto")
    generate_stubs(proto_root)
    from hallmark.v1 import hallmark_pb2, hallmark_pb2_grpc  # noqa: E402

    def read(name: str) -> bytes:
        with open(os.path.join(station_dir, name), "rb") as f:
            return f.read()

    creds = grpc.ssl_channel_credentials(
        root_certificates=read("ca.pem"),
        private_key=read("key.pem"),
        certificate_chain=read("cert.pem") + read("chain.pem"),
    )
    with grpc.secure_channel(target, creds) as channel:
        stub = hallmark_pb2_grpc.ProvisioningStub(channel)
        with open(csr_file, "rb") as f:
            csr = f.read()
        resp = stub.Provision(
            hallmark_pb2.ProvisionRequest(model=model, hardware_serial=serial, csr_der=csr),
            timeout=30,
        )
        # A second call with the same serial must be refused with ALREADY_EXISTS.
        try:
            stub.Provision(
                hallmark_pb2.ProvisionRequest(model=model, hardware_serial=serial, csr_der=csr),
                timeout=30,
            )
            sys.exit("duplicate serial was accepted")
        except grpc.RpcError as e:
            duplicate = e.code().name

    os.makedirs(out_dir, exist_ok=True)
    for name, der in [("cert.der", resp.certificate_der), ("chain.der", resp.chain_der[0]), ("root.der", resp.root_der)]:
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(der)
    print(json.dumps({
        "device_id": resp.device_id,
        "setup_code_length": len(resp.setup_code),
        "certificate_serial": resp.certificate_serial,
        "enrollment_endpoint": resp.enrollment_endpoint,
        "duplicate": duplicate,
    }))


if __name__ == "__main__":
    main()
