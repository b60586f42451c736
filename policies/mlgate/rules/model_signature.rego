# The model signature (OpenSSF model-signing: a Sigstore bundle over a manifest
# of every model file's digest). Required where the environment says
# model_signature.required; when a release ships one anyway it is checked in
# every environment, since a signature that fails is a fact about the model.
package mlgate.rules.model_signature

import rego.v1

import data.mlgate.lib

sig := lib.evidence("model_signature")

path := lib.s(sig, "path")

# Required unless the environment says, literally, false.
required if not lib.is_false(lib.thresholds("model_signature"), "required")

judged if required

judged if sig.present == true

# METADATA
# title: Model signature missing
# description: The environment requires a signed model and the release carries no model signature.
# custom:
#   id: MLG-SIG-001
#   severity: critical
#   controls: [21CFR11.70, 21CFR11.10(c), EUAIA-12]
#   remediation: Sign the model directory with model-signing (e.g. `model_signing sign`) and name the signature under evidence in mlgate.yaml.
#   expected: >-
#     Unless model_signature.required is false, the release carries a model
#     signature.
violation contains v if {
	required
	not sig.present == true
	v := {
		"id": "MLG-SIG-001",
		"severity": "critical",
		"controls": ["21CFR11.70", "21CFR11.10(c)", "EUAIA-12"],
		"remediation": "Sign the model directory with model-signing (e.g. `model_signing sign`) and name the signature under evidence in mlgate.yaml.",
		"message": sprintf("no model signature in the release; environment %s requires a signed model", [lib.s(input, "environment")]),
	}
}

# METADATA
# title: Model signature invalid
# description: The signature file exists but is not a well-formed model-signing bundle.
# custom:
#   id: MLG-SIG-002
#   severity: critical
#   controls: [21CFR11.70, 21CFR11.10(c)]
#   remediation: Sign the model again with model-signing; do not edit the bundle.
#   expected: >-
#     Whenever the release ships a model signature (whatever
#     model_signature.required says), it is a well-formed model-signing bundle.
violation contains v if {
	judged
	sig.present == true
	not sig.valid == true
	v := {
		"id": "MLG-SIG-002",
		"severity": "critical",
		"controls": ["21CFR11.70", "21CFR11.10(c)"],
		"remediation": "Sign the model again with model-signing; do not edit the bundle.",
		"message": sprintf("model signature %s does not conform to its format (errors: %s); expected a model-signing bundle", [path, lib.join(lib.list_of(sig, "errors"))]),
		"subject": path,
	}
}

# METADATA
# title: Model signature not verified
# description: The model signature did not verify (bad signature, untrusted key or identity, or model files that differ from the signed manifest).
# custom:
#   id: MLG-SIG-003
#   severity: critical
#   controls: [21CFR11.70, 21CFR11.10(c), EUAIA-12]
#   remediation: Sign the model with a key or identity the trust policy lists, and ship the exact files that were signed.
#   expected: >-
#     Whenever the release ships a model signature (whatever
#     model_signature.required says), it verified against the trust policy.
violation contains v if {
	judged
	sig.present == true
	not sig.verified == true
	v := {
		"id": "MLG-SIG-003",
		"severity": "critical",
		"controls": ["21CFR11.70", "21CFR11.10(c)", "EUAIA-12"],
		"remediation": "Sign the model with a key or identity the trust policy lists, and ship the exact files that were signed.",
		"message": sprintf("model signature %s (signer %s) is not verified: %s; expected a verified signature", [path, lib.s(sig, "signer_id"), lib.s(sig, "reason")]),
		"subject": path,
	}
}

# METADATA
# title: Model signature is for another model
# description: The digest the signature covers is not the digest of the model in this release.
# custom:
#   id: MLG-SIG-004
#   severity: critical
#   controls: [21CFR11.70, 21CFR11.10(c)]
#   remediation: Sign the model being released; a signature cannot be moved to another model.
#   expected: >-
#     Whenever the release ships a model signature (whatever
#     model_signature.required says), the digest it covers is the digest of the
#     model in this release.
violation contains v if {
	judged
	sig.present == true
	not sig.subject_digest == lib.model_digest
	v := {
		"id": "MLG-SIG-004",
		"severity": "critical",
		"controls": ["21CFR11.70", "21CFR11.10(c)"],
		"remediation": "Sign the model being released; a signature cannot be moved to another model.",
		"message": sprintf("model signature %s was made for model digest %s but the release model digest is %s; expected a signature over this model", [path, lib.short(sig, "subject_digest"), lib.short(object.get(input, "model", {}), "digest")]),
		"subject": path,
	}
}

mismatch_kinds := {
	"missing": "is signed but missing from the model",
	"extra": "is in the model but not signed",
	"changed": "differs from its signed digest",
}

# The per-file comparison, only when it has all three lists.
mismatches := m if {
	m := sig.mismatches
	is_object(m)
	# (counted, not `every`: the compiled engine's `every` holds with a failing body)
	count({kind | some kind in object.keys(mismatch_kinds); is_array(m[kind])}) == count(mismatch_kinds)
}

# METADATA
# title: Model file does not match the signature
# description: >-
#   A model file is missing, extra or changed compared with the signed manifest
#   (or the per-file comparison is absent or incomplete, so nothing shows the files match).
# custom:
#   id: MLG-SIG-005
#   severity: critical
#   controls: [21CFR11.70, 21CFR11.10(c), EUAIA-12]
#   remediation: Restore the signed model files, or sign the model again after review.
#   expected: >-
#     Whenever the release ships a model signature (whatever
#     model_signature.required says), it carries the per-file comparison with
#     the signed manifest, and that lists no missing, extra or changed model
#     file.
violation contains v if {
	judged
	sig.present == true
	some kind, text in mismatch_kinds
	some file in lib.list_of(mismatches, kind)
	v := {
		"id": "MLG-SIG-005",
		"severity": "critical",
		"controls": ["21CFR11.70", "21CFR11.10(c)", "EUAIA-12"],
		"remediation": "Restore the signed model files, or sign the model again after review.",
		"message": sprintf("model file %v %s (%s); expected the model files to match the signature %s", [file, text, kind, path]),
		"subject": sprintf("%v", [file]),
	}
}

violation contains v if {
	judged
	sig.present == true
	not mismatches
	v := {
		"id": "MLG-SIG-005",
		"severity": "critical",
		"controls": ["21CFR11.70", "21CFR11.10(c)", "EUAIA-12"],
		"remediation": "Restore the signed model files, or sign the model again after review.",
		"message": sprintf("model signature %s carries no per-file comparison (mismatches is %s); expected lists of missing, extra and changed files", [path, lib.s(sig, "mismatches")]),
		"subject": path,
	}
}
