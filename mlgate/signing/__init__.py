"""Signatures and trust: who may sign what, and whether a signature holds.

- :mod:`~mlgate.signing.keys`: key files (generate, load, key ids);
- :mod:`~mlgate.signing.attestation`: in-toto Statements in DSSE envelopes inside Sigstore bundles,
  signed and verified with a key;
- :mod:`~mlgate.signing.pki`: organisation CA certificates and Sigstore keyless bundles, verified
  offline against a trusted root;
- :mod:`~mlgate.signing.signers`: one dispatch over the three identity sources (key, CA, keyless);
- :mod:`~mlgate.signing.trust`: the trust policy (approvers, model signers, checkpoint signers,
  validity windows, revocations);
- :mod:`~mlgate.signing.approve`: writing approvals and waivers (``mlgate approve``, ``mlgate waive``);
- :mod:`~mlgate.signing.verify`: every signature of a release, for ``mlgate verify``.

May import: :mod:`mlgate.errors`, :mod:`mlgate.canonical`, :mod:`mlgate.clock`,
:mod:`mlgate.safeio`, :mod:`mlgate.schemas`, the evidence readers (``verify`` reads a release
through them) and :mod:`mlgate.manifest`. Never the gate, the policy engines, the stores, the
audit trail or the front doors. Heavy libraries (cryptography, sigstore) are imported where a
signature is made or checked, never at import.
"""
