"""Signature verification figures for issue #6. Prints; asserts nothing.

    python benchmarks/signatures.py [--runs 200] [--hash-gib 1.0] [--skip-hash]

- median time to verify one approval (parse, signer, credential validity, statement, predicate)
  per identity source: key (Ed25519, ECDSA P-256), organisation-PKI certificate (leaf + one
  intermediate to a root), Sigstore keyless (local trust root: chain, SCT, Rekor proof,
  checkpoint and promise);
- median time to verify one model signature per mode (the signature and manifest checks, on a
  model whose digest is already computed: hashing is measured separately);
- median wall time of ``mlgate verify`` on the readmission-risk example (a fresh process);
- model-directory hashing throughput against this machine's sha256 limit: the measurement of
  benchmarks/check.py (``hashing``), reused rather than duplicated.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO / "benchmarks")]
UTC = dt.timezone.utc
AT = dt.datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
ISSUER = "https://login.hospital.example"


def median_us(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm: imports, parsed trust root, caches
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--hash-gib", type=float, default=1.0)
    parser.add_argument("--skip-hash", action="store_true")
    args = parser.parse_args()

    from cryptography.x509.oid import ExtendedKeyUsageOID

    from mlgate.signing import keys
    from mlgate.signing.attestation import make_statement
    from mlgate.canonical import canonical_json
    from mlgate.evidence.approval import PREDICATE_TYPE, create_approval, verify_approval
    from mlgate.evidence.model_digest import compute_model_digest
    from mlgate.evidence.model_signature import verify_model_signature
    from mlgate.signing.trust import load_trust_policy
    from pki_helpers import make_pki
    from sigstore_local import LocalSigstore, model_signing_payload

    tmp = Path(tempfile.mkdtemp(prefix="mlgate-bench-sig-"))
    try:
        pki, sigstore = make_pki(), LocalSigstore.create()
        ed_private, ed_public = keys.generate_keypair("ed25519")
        ec_private, ec_public = keys.generate_keypair("ecdsa-p256")
        ci_private, ci_public = keys.generate_keypair("ecdsa-p256")
        (tmp / "trusted_root.json").write_bytes(sigstore.trusted_root_json())

        def block(pem: bytes) -> str:
            return "".join(" " * 10 + line + "\n" for line in pem.decode().splitlines())

        (tmp / "trust.yaml").write_text(f"""\
apiVersion: mlgate.dev/v1
kind: TrustPolicy
sigstore: {{trustedRoot: {{path: trusted_root.json}}}}
certificateAuthorities:
  - id: staff
    roots:
      - pem: |
{block(pki.root.pem)}approvers:
  - id: jane.roe@hospital.example
    name: Dr. Jane Roe
    roles: [clinical-safety-officer]
    meanings: [approval]
    keys:
      - pem: |
{block(ed_public)}      - pem: |
{block(ec_public)}    certificates: [{{ca: staff}}]
    keyless: [{{issuer: "{ISSUER}", subject: jane.roe@hospital.example}}]
modelSigners:
  - id: ci
    name: CI
    keys:
      - pem: |
{block(ci_public)}    certificates: [{{ca: staff, email: ci@hospital.example}}]
    keyless: [{{issuer: "{ISSUER}", subject: ci@hospital.example}}]
""")
        trust = load_trust_policy(tmp / "trust.yaml")
        evidence = {f"evidence/file{i}.json": "a" * 64 for i in range(4)}
        common = dict(release_name="r", model_digest="b" * 64, printed_name="Dr. Jane Roe", signer_id="jane.roe@hospital.example",
                      role="clinical-safety-officer", meaning="approval", environment="production", signed_at=AT,
                      expires_at=None, evidence_digests=evidence, comment=None)
        leaf = pki.leaf("jane.roe@hospital.example")
        predicate = {"signer": {"id": "jane.roe@hospital.example", "printedName": "Dr. Jane Roe"}, "role": "clinical-safety-officer",
                     "meaning": "approval", "environment": "production", "signedAt": "2026-11-28T09:30:00Z", "expiresAt": None,
                     "evidenceDigests": evidence, "comment": None}
        approvals = {
            "key (Ed25519)": create_approval(ed_private, **common),
            "key (ECDSA P-256)": create_approval(ec_private, **common),
            "certificate (org PKI, 3-level chain)": create_approval(leaf.key_pem, certificate_chain_pem=pki.chain_pem(leaf), **common),
            "keyless (Sigstore, local trust root)": sigstore.sign_dsse(
                canonical_json(make_statement([{"name": "r", "digest": {"sha256": "b" * 64}}], PREDICATE_TYPE, predicate)),
                subject="jane.roe@hospital.example", issuer=ISSUER, at=AT),
        }
        print(f"approval verification, median of {args.runs} (in-process, warm):")
        for label, data in approvals.items():
            assert verify_approval(data, "a.json", trust=trust)["verified"], label
            print(f"  {label:40s} {median_us(lambda d=data: verify_approval(d, 'a.json', trust=trust), args.runs):8.0f} us")

        model = tmp / "model"
        model.mkdir()
        for i in range(8):
            (model / f"shard-{i}.bin").write_bytes(bytes([i]) * 4096)
        (tmp / "ci.key").write_bytes(ci_private)
        cli = Path(sys.executable).parent / "model_signing"
        subprocess.run([str(cli), "sign", "key", str(model), "--private_key", str(tmp / "ci.key"), "--signature", str(tmp / "key.sig")],
                       check=True, capture_output=True)
        ci_leaf = pki.leaf("ci@hospital.example", ekus=[ExtendedKeyUsageOID.CODE_SIGNING])
        (tmp / "leaf.key").write_bytes(ci_leaf.key_pem)
        (tmp / "leaf.pem").write_bytes(ci_leaf.pem)
        (tmp / "chain.pem").write_bytes(pki.intermediate.pem)
        subprocess.run([str(cli), "sign", "certificate", str(model), "--private_key", str(tmp / "leaf.key"), "--signing_certificate",
                        str(tmp / "leaf.pem"), "--certificate_chain", str(tmp / "chain.pem"), "--signature", str(tmp / "cert.sig")],
                       check=True, capture_output=True)
        digest = compute_model_digest(model)
        signatures = {
            "key (model_signing sign key)": (tmp / "key.sig").read_bytes(),
            "certificate (model_signing sign certificate)": (tmp / "cert.sig").read_bytes(),
            "keyless (Sigstore bundle, local trust root)": sigstore.sign_dsse(model_signing_payload(model), subject="ci@hospital.example", issuer=ISSUER, at=AT),
        }
        print(f"model signature verification (8 files, digest precomputed), median of {args.runs}:")
        for label, data in signatures.items():
            def run(d: bytes = data) -> dict:
                return verify_model_signature(d, "model.sig", model_path=model, digest=digest, trust=trust)
            assert run()["verified"], label
            print(f"  {label:46s} {median_us(run, args.runs):8.0f} us")

        walls = []
        for _ in range(5):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "mlgate", "verify", "examples/readmission-risk"], cwd=REPO, capture_output=True, check=True)
            walls.append(time.perf_counter() - start)
        print(f"mlgate verify examples/readmission-risk (3 approvals + model signature, fresh process): {statistics.median(walls) * 1000:.0f} ms median of 5")
    finally:
        shutil.rmtree(tmp)

    if not args.skip_hash:
        from check import hashing  # benchmarks/check.py: one measurement, one place

        hashing(args.hash_gib)
    return 0


if __name__ == "__main__":
    sys.exit(main())
