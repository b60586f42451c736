# Signed approvals (21 CFR Part 11 electronic signatures; EU AI Act Art. 14
# human oversight). The Python side verifies each approval attestation against
# the trust policy and reports facts; these rules decide whether the verified,
# authorised approvals cover what the environment requires (approvals.required:
# one {role, meaning} per required signature), by different people, none of
# them the release owner, each bound to this model digest, this environment and
# exactly this evidence, and each valid at the evaluation time.
package mlgate.rules.approvals

import rego.v1

import data.mlgate.lib

block := lib.evidence("approvals")

records := lib.list_of(block, "records")

cfg := lib.thresholds("approvals")

required := lib.list_of(cfg, "required")

what(x) := sprintf("%s by %s", [lib.s(x, "meaning"), lib.s(x, "role")])

person(r) := lower(r.signer_id) if is_string(r.signer_id)

# The approvals signed for the environment being gated. A release may carry
# approvals for several environments; each gate judges its own (approvals for
# other environments are not counted, see MLG-APPR-014). Every approval's
# signature must verify, whatever its environment (MLG-APPR-003).
relevant contains r if {
	some r in records
	r.environment == input.environment
}

# A verified approval for this environment whose role, meaning and environment
# the trust policy grants its signer.
effective(r) if {
	r.verified == true
	r.role_authorised == true
	r.meaning_authorised == true
	r.environment_authorised == true
	r.environment == input.environment
}

# The effective approvals, found once for all the rules below.
effective_here contains r if {
	some r in relevant
	effective(r)
}

# The people whose effective approvals fill each required entry, by its index in
# required (the rules read this instead of scanning the records again).
filled := {i: people |
	some i, x in required
	people := {p | some r in effective_here; r.role == x.role; r.meaning == x.meaning; p := person(r); is_string(p)}
}

# The indexes of the required entries that no effective approval fills.
unfilled contains i if {
	some i, people in filled
	count(people) == 0
}

# The effective approvals for a message ("signer: meaning by role"), in the order
# the engine iterates a set of records: sorted in OPA and regorus, in the order
# of insertion in rego-cpp. (With two or more effective approvals, MLG-APPR-004's
# message is the one text that differs between these engines.)
# sorted: engines iterate a set of objects in different orders (rego-cpp in insertion order)
effective_text := lib.join(sort([sprintf("%s: %s", [lib.s(r, "signer_id"), what(r)]) | some r in effective_here]))

no_approvals if count(records) == 0

no_approvals if not block.present == true

# METADATA
# title: Approvals missing
# description: >-
#   The release carries no signed approvals (or the approvals block is not
#   marked present); every environment requires at least one.
# custom:
#   id: MLG-APPR-001
#   severity: critical
#   controls: [21CFR11.50, EUAIA-14]
#   remediation: Have each required approver sign the release with `mlgate approve` and add the approval files under evidence/approvals/.
#   expected: >-
#     The release carries signed approvals, in an approvals block marked
#     present: every environment requires the signatures listed in
#     approvals.required.
violation contains v if {
	no_approvals
	v := {
		"id": "MLG-APPR-001",
		"severity": "critical",
		"controls": ["21CFR11.50", "EUAIA-14"],
		"remediation": "Have each required approver sign the release with `mlgate approve` and add the approval files under evidence/approvals/.",
		"message": sprintf("no signed approvals in the release; environment %s requires %s", [lib.s(input, "environment"), lib.join([what(x) | some x in required])]),
	}
}

# METADATA
# title: Approvals evidence invalid
# description: An approval file does not conform to the mlgate approval attestation format.
# custom:
#   id: MLG-APPR-002
#   severity: critical
#   controls: [21CFR11.10(a), 21CFR11.50]
#   remediation: Replace the named approval files with ones written by `mlgate approve`; do not edit signed files.
#   expected: >-
#     Every approval file conforms to the mlgate approval attestation format,
#     as written by mlgate approve and not edited since.
violation contains v if {
	block.present == true
	not block.valid == true
	v := {
		"id": "MLG-APPR-002",
		"severity": "critical",
		"controls": ["21CFR11.10(a)", "21CFR11.50"],
		"remediation": "Replace the named approval files with ones written by `mlgate approve`; do not edit signed files.",
		"message": sprintf("approvals evidence does not conform to the approval attestation format (errors: %s); expected valid signed approvals", [lib.join(lib.list_of(block, "errors"))]),
	}
}

# METADATA
# title: Approval signature not verified
# description: >-
#   An approval's signature did not verify against the trust policy (unknown
#   key or identity, bad signature, tampered payload).
# custom:
#   id: MLG-APPR-003
#   severity: critical
#   controls: [21CFR11.10(d), 21CFR11.70]
#   remediation: Have the approver sign again with the key or identity listed for them in the trust policy; investigate a tampered file.
#   expected: >-
#     Every approval in the release, whatever its environment, has a signature
#     that verifies against the trust policy (a key or identity listed for the
#     approver, and an untampered payload).
violation contains v if {
	some r in records
	not r.verified == true
	v := {
		"id": "MLG-APPR-003",
		"severity": "critical",
		"controls": ["21CFR11.10(d)", "21CFR11.70"],
		"remediation": "Have the approver sign again with the key or identity listed for them in the trust policy; investigate a tampered file.",
		"message": sprintf("approval %s by %s is not verified: %s; expected a signature that verifies against the trust policy", [lib.s(r, "path"), lib.s(r, "signer_id"), lib.s(r, "reason")]),
		"subject": lib.s(r, "path"),
	}
}

# METADATA
# title: Required approval missing
# description: >-
#   A signature the environment requires (a role with a meaning, e.g. approval
#   by clinical-safety-officer) is not given by any verified approval whose
#   signer the trust policy authorises for that role and meaning.
# custom:
#   id: MLG-APPR-004
#   severity: critical
#   controls: [21CFR11.10(g), 21CFR11.50, EUAIA-14]
#   remediation: Have a person the trust policy lists for the role sign with the required meaning (mlgate approve --role ROLE --meaning MEANING).
#   expected: >-
#     Every signature listed in approvals.required (a role with a meaning) is
#     given by a verified approval for this environment whose signer the trust
#     policy authorises for that role, that meaning and this environment.
violation contains v if {
	some i in unfilled
	x := required[i]
	v := {
		"id": "MLG-APPR-004",
		"severity": "critical",
		"controls": ["21CFR11.10(g)", "21CFR11.50", "EUAIA-14"],
		"remediation": "Have a person the trust policy lists for the role sign with the required meaning (mlgate approve --role ROLE --meaning MEANING).",
		"message": sprintf("environment %s requires %s; no verified, authorised approval gives it (verified and authorised: %s)", [lib.s(input, "environment"), what(x), effective_text]),
		"subject": what(x),
	}
}

# METADATA
# title: Approver not authorised for the role or meaning
# description: >-
#   A verified approval for this environment claims a role, meaning or
#   environment the trust policy does not grant its signer.
# custom:
#   id: MLG-APPR-005
#   severity: critical
#   controls: [21CFR11.10(g), 21CFR11.50]
#   remediation: Have an authorised person sign, or (after review) list the role for the signer in the trust policy.
#   expected: >-
#     Every verified approval for this environment claims only a role, a
#     meaning and an environment that the trust policy grants its signer.
violation contains v if {
	some r in relevant
	r.verified == true
	not r in effective_here
	v := {
		"id": "MLG-APPR-005",
		"severity": "critical",
		"controls": ["21CFR11.10(g)", "21CFR11.50"],
		"remediation": "Have an authorised person sign, or (after review) list the role for the signer in the trust policy.",
		"message": sprintf("approval %s by %s signs %s for %s, but the trust policy authorises this signer for the role: %s, the meaning: %s, the environment: %s; expected all three authorised", [lib.s(r, "path"), lib.s(r, "signer_id"), what(r), lib.s(r, "environment"), lib.s(r, "role_authorised"), lib.s(r, "meaning_authorised"), lib.s(r, "environment_authorised")]),
		"subject": lib.s(r, "path"),
	}
}

distinct_required if not cfg.distinct_people == false

# METADATA
# title: Required approvals not given by distinct people
# description: >-
#   The required signatures cannot be assigned to different people: one person
#   fills two required roles (e.g. reviews and approves their own release).
#   Checked for every pair of required entries, and for all of them together
#   when there are three or more.
# custom:
#   id: MLG-APPR-006
#   severity: critical
#   controls: [21CFR11.10(g), EUAIA-14]
#   remediation: Have a different person give one of the named signatures.
#   expected: >-
#     When approvals.distinct_people is true, the signatures listed in
#     approvals.required can be given by different people: no two of them are
#     given only by the same person, and all of them together come from at
#     least as many people as there are signatures.
violation contains v if {
	distinct_required
	some i, x in required
	some j, y in required
	i < j
	count(filled[i]) > 0
	count(filled[j]) > 0
	people := filled[i] | filled[j]
	count(people) < 2
	v := {
		"id": "MLG-APPR-006",
		"severity": "critical",
		"controls": ["21CFR11.10(g)", "EUAIA-14"],
		"remediation": "Have a different person give one of the named signatures.",
		"message": sprintf("required signatures %s and %s are both given only by %s; environment %s requires a different person for each", [what(x), what(y), lib.join(sort(people)), lib.s(input, "environment")]),
		"subject": sprintf("%s; %s", [what(x), what(y)]),
	}
}

violation contains v if {
	distinct_required
	count(required) >= 3
	count(unfilled) == 0
	people := {p | some ps in filled; some p in ps}
	count(people) < count(required)
	v := {
		"id": "MLG-APPR-006",
		"severity": "critical",
		"controls": ["21CFR11.10(g)", "EUAIA-14"],
		"remediation": "Have a different person give one of the named signatures.",
		"message": sprintf("the %d required signatures (%s) are given by only %d people (%s); environment %s requires a different person for each", [count(required), lib.join([what(x) | some x in required]), count(people), lib.join(sort(people)), lib.s(input, "environment")]),
	}
}

owner := lower(input.release.owner) if is_string(input.release.owner)

# METADATA
# title: Release owner approves their own release
# description: >-
#   An approval is signed by the release owner; approval must be independent of
#   the team releasing the model. Also fires when the release names no owner,
#   as independence cannot then be checked.
# custom:
#   id: MLG-APPR-007
#   severity: critical
#   controls: [21CFR11.10(g), EUAIA-14]
#   remediation: Have someone other than the release owner give the approval.
#   expected: >-
#     The release names its owner, and no approval for this environment is
#     signed by the release owner.
violation contains v if {
	some r in relevant
	person(r) == owner
	v := {
		"id": "MLG-APPR-007",
		"severity": "critical",
		"controls": ["21CFR11.10(g)", "EUAIA-14"],
		"remediation": "Have someone other than the release owner give the approval.",
		"message": sprintf("approval %s is signed by %s, the release owner; expected an approver independent of the release owner", [lib.s(r, "path"), lib.s(r, "signer_id")]),
		"subject": lib.s(r, "path"),
	}
}

violation contains v if {
	count(records) > 0
	not owner
	v := {
		"id": "MLG-APPR-007",
		"severity": "critical",
		"controls": ["21CFR11.10(g)", "EUAIA-14"],
		"remediation": "Have someone other than the release owner give the approval.",
		"message": sprintf("release owner is %s; expected the owner named in the manifest, to check approvers are independent of it", [lib.s(object.get(input, "release", {}), "owner")]),
	}
}

# No expiry (null) or an expiry after the evaluation. A missing key is neither.
unexpired(r) if object.get(r, "expires_at_ns", "missing") == null

unexpired(r) if {
	is_number(r.expires_at_ns)
	r.expires_at_ns > lib.now_ns
}

# METADATA
# title: Approval expired
# description: The approval's expiry time (expires_at) is at or before the evaluation time.
# custom:
#   id: MLG-APPR-008
#   severity: high
#   controls: [21CFR11.10(g), EUAIA-14]
#   remediation: Have the approver review the release again and sign a new approval.
#   expected: >-
#     Every approval for this environment has no expiry, or expires after the
#     evaluation time.
violation contains v if {
	some r in relevant
	not unexpired(r)
	v := {
		"id": "MLG-APPR-008",
		"severity": "high",
		"controls": ["21CFR11.10(g)", "EUAIA-14"],
		"remediation": "Have the approver review the release again and sign a new approval.",
		"message": sprintf("approval %s by %s expired at %s (expires_at_ns %s); expected an expiry after the evaluation time %s", [lib.s(r, "path"), lib.s(r, "signer_id"), lib.s(r, "expires_at"), lib.s(r, "expires_at_ns"), lib.s(input, "evaluated_at")]),
		"subject": lib.s(r, "path"),
	}
}

# No clock skew is allowed: a signing time after the evaluation is refused (a
# post-dated approval cannot be used to outlive a revocation or an expiry).
signed_in_past(r) if {
	is_number(r.signed_at_ns)
	r.signed_at_ns <= lib.now_ns
}

# METADATA
# title: Approval signing time missing or in the future
# description: >-
#   The approval has no signing time, or a signing time after the evaluation
#   (not yet valid, a wrong clock, or a post-dated signature). Part 11 requires
#   the date and time of signing.
# custom:
#   id: MLG-APPR-009
#   severity: high
#   controls: [21CFR11.50, 21CFR11.10(e)]
#   remediation: Check the signer's clock and have the approver sign again.
#   expected: >-
#     Every approval for this environment has a signing time, at or before the
#     evaluation time.
violation contains v if {
	some r in relevant
	not signed_in_past(r)
	v := {
		"id": "MLG-APPR-009",
		"severity": "high",
		"controls": ["21CFR11.50", "21CFR11.10(e)"],
		"remediation": "Check the signer's clock and have the approver sign again.",
		"message": sprintf("approval %s by %s has signing time %s, which is after the evaluation time %s; expected a signing time in the past", [lib.s(r, "path"), lib.s(r, "signer_id"), lib.s(r, "signed_at"), lib.s(input, "evaluated_at")]),
		"subject": lib.s(r, "path"),
	}
}

# METADATA
# title: Approval is for another model
# description: >-
#   The approval was signed for a different model digest than the model in this
#   release: the model changed after approval, or the approval was copied from
#   another release.
# custom:
#   id: MLG-APPR-010
#   severity: critical
#   controls: [21CFR11.70]
#   remediation: Have the approvers review and sign this model; an approval cannot be moved to another model.
#   expected: >-
#     Every approval for this environment was signed for the model digest of
#     this release.
violation contains v if {
	some r in relevant
	not r.subject_digest == lib.model_digest
	v := {
		"id": "MLG-APPR-010",
		"severity": "critical",
		"controls": ["21CFR11.70"],
		"remediation": "Have the approvers review and sign this model; an approval cannot be moved to another model.",
		"message": sprintf("approval %s by %s was signed for a different model digest %s, but the release model digest is %s: the model changed after approval", [lib.s(r, "path"), lib.s(r, "signer_id"), lib.short(r, "subject_digest"), lib.short(object.get(input, "model", {}), "digest")]),
		"subject": lib.s(r, "path"),
	}
}

# An approval made before approvals bound the release identity (no `release`
# block in its predicate) counts only where the environment accepts it
# (approvals.accept_unbound_identity: true); by default it does not.
accept_unbound if cfg.accept_unbound_identity == true

# A verified approval that binds no release identity: a legacy one, or (failing
# closed) one whose binding verdict is missing or not understood.
unbound(r) if {
	not r.release_binding == "bound"
	not r.release_binding == "changed"
}

# METADATA
# title: Approval is for another state of the release
# description: >-
#   A verified approval for this environment signed the release's identity and
#   manifest, and the release has changed since: its name, version, owner,
#   storage URI, datasets, validation records, provenance or another manifest
#   field differs from what the approver signed.
# custom:
#   id: MLG-APPR-020
#   severity: critical
#   controls: [21CFR11.70, 21CFR11.10(e)]
#   remediation: >-
#     Undo the change, or have the approvers review the release as it is now and
#     sign again (finish the manifest, run mlgate evidence collect, then sign).
#   expected: >-
#     Every verified approval for this environment signed this release's name,
#     version, owner, storage URIs and manifest exactly as they are now.
violation contains v if {
	some r in relevant
	r.verified == true
	r.release_binding == "changed"
	v := {
		"id": "MLG-APPR-020",
		"severity": "critical",
		"controls": ["21CFR11.70", "21CFR11.10(e)"],
		"remediation": "Undo the change, or have the approvers review the release as it is now and sign again (finish the manifest, run mlgate evidence collect, then sign).",
		"message": sprintf("approval %s by %s no longer matches the release: %s", [lib.s(r, "path"), lib.s(r, "signer_id"), trim_prefix(concat("; ", [sprintf("%v", [c]) | some c in lib.list_of(r, "release_changes")]), "")]),
		"subject": lib.s(r, "path"),
	}
}

# METADATA
# title: Approval does not bind the release identity
# description: >-
#   A verified approval for this environment was made before approvals signed
#   the release identity and manifest (a legacy approval): nothing it signs
#   names the release or where its model lives. Refused unless the environment
#   accepts such approvals (approvals.accept_unbound_identity).
# custom:
#   id: MLG-APPR-021
#   severity: high
#   controls: [21CFR11.70]
#   remediation: Have the approver sign again with this version of mlgate approve, which binds the release.
#   expected: >-
#     Every verified approval for this environment binds the release identity
#     and manifest (or the environment accepts legacy approvals).
violation contains v if {
	some r in relevant
	r.verified == true
	unbound(r)
	not accept_unbound
	v := {
		"id": "MLG-APPR-021",
		"severity": "high",
		"controls": ["21CFR11.70"],
		"remediation": "Have the approver sign again with this version of mlgate approve, which binds the release.",
		"message": unbound_message(r),
		"subject": lib.s(r, "path"),
	}
}

# MLG-APPR-021 as a warning where the environment still accepts legacy
# approvals (approvals.accept_unbound_identity: true).
warning contains v if {
	some r in relevant
	r.verified == true
	unbound(r)
	accept_unbound
	v := {
		"id": "MLG-APPR-021",
		"severity": "high",
		"controls": ["21CFR11.70"],
		"remediation": "Have the approver sign again with this version of mlgate approve, which binds the release.",
		"message": unbound_message(r),
		"subject": lib.s(r, "path"),
	}
}

unbound_message(r) := sprintf("approval %s by %s is a legacy approval: it does not sign the release identity (name, version, owner, storage URIs, manifest), so it could be copied to another release", [lib.s(r, "path"), lib.s(r, "signer_id")])

# METADATA
# title: Approver not authorised for the environment
# description: >-
#   A verified approval for this environment is signed by someone the trust
#   policy does not authorise to approve for it.
# custom:
#   id: MLG-APPR-011
#   severity: critical
#   controls: [21CFR11.10(g), 21CFR11.50]
#   remediation: Have an approver the trust policy lists for this environment sign, or (after review) add the environment to the signer's entry.
#   expected: >-
#     Every verified approval for this environment is signed by someone the
#     trust policy authorises to approve for this environment.
violation contains v if {
	some r in relevant
	r.verified == true
	not r.environment_authorised == true
	v := {
		"id": "MLG-APPR-011",
		"severity": "critical",
		"controls": ["21CFR11.10(g)", "21CFR11.50"],
		"remediation": "Have an approver the trust policy lists for this environment sign, or (after review) add the environment to the signer's entry.",
		"message": sprintf("approval %s by %s is for %s, but the trust policy does not authorise this signer for environment %s", [lib.s(r, "path"), lib.s(r, "signer_id"), lib.s(r, "environment"), lib.s(input, "environment")]),
		"subject": lib.s(r, "path"),
	}
}

# METADATA
# title: Approval for another environment not counted
# description: >-
#   A verified approval names another environment than the one being gated; it
#   is not counted here (a production approval does not approve staging, nor
#   the other way round).
# custom:
#   id: MLG-APPR-014
#   severity: low
#   controls: [21CFR11.50]
#   remediation: None needed if the environment's own approvals are present; otherwise sign for this environment (mlgate approve --env ENV).
#   expected: >-
#     Every verified approval in the release is for the environment being
#     gated.
warning contains v if {
	some r in records
	r.verified == true
	not r.environment == input.environment
	v := {
		"id": "MLG-APPR-014",
		"severity": "low",
		"controls": ["21CFR11.50"],
		"remediation": "None needed if the environment's own approvals are present; otherwise sign for this environment (mlgate approve --env ENV).",
		"message": sprintf("approval %s by %s is for environment %s, not %s; not counted", [lib.s(r, "path"), lib.s(r, "signer_id"), lib.s(r, "environment"), lib.s(input, "environment")]),
		"subject": lib.s(r, "path"),
	}
}

evidence_files := f if {
	f := input.evidence_files
	is_object(f)
}

approved_files(r) := d if {
	d := r.evidence_digests
	is_object(d)
} else := {}

# The evidence files of the release, by name.
released := object.keys(evidence_files)

# How the evidence an approval signed differs from the release's: one text per
# kind of difference ("changed since approval: a, b"), empty when they agree.
evidence_diff(r) := [part |
	approved := approved_files(r)
	signed := object.keys(approved)
	some pair in [
		["changed since approval", sort([f | some f in released; f in signed; approved[f] != evidence_files[f]])],
		["added since approval", sort([f | some f in released; not f in signed])],
		["approved but no longer in the release", sort([f | some f in signed; not f in released])],
	]
	count(pair[1]) > 0
	part := sprintf("%s: %s", [pair[0], lib.join(pair[1])])
]

# METADATA
# title: Evidence changed since approval
# description: >-
#   The evidence files an approval signed (by digest) are not exactly the
#   evidence in this release: a file changed, was added, or was removed after
#   the approver signed.
# custom:
#   id: MLG-APPR-012
#   severity: critical
#   controls: [21CFR11.70, 21CFR11.10(e)]
#   remediation: Have the approver review the current evidence and sign again.
#   expected: >-
#     The input lists the release's evidence digests, and every approval for
#     this environment signed exactly those: no evidence file changed, added
#     or removed since approval.
violation contains v if {
	is_object(evidence_files)
	some r in relevant
	diff := evidence_diff(r)
	count(diff) > 0
	v := {
		"id": "MLG-APPR-012",
		"severity": "critical",
		"controls": ["21CFR11.70", "21CFR11.10(e)"],
		"remediation": "Have the approver review the current evidence and sign again.",
		"message": sprintf("approval %s by %s covers different evidence than the release (%s); expected the evidence digests the approver signed", [lib.s(r, "path"), lib.s(r, "signer_id"), trim_prefix(concat("; ", diff), "")]),
		"subject": lib.s(r, "path"),
	}
}

violation contains v if {
	count(records) > 0
	not evidence_files
	v := {
		"id": "MLG-APPR-012",
		"severity": "critical",
		"controls": ["21CFR11.70", "21CFR11.10(e)"],
		"remediation": "Have the approver review the current evidence and sign again.",
		"message": sprintf("input evidence_files is %s; expected the digests of the release's evidence, to compare with what the approvers signed", [lib.s(input, "evidence_files")]),
	}
}

# METADATA
# title: Approval lacks the signature manifestation
# description: >-
#   Part 11.50 requires a signed record to show the signer's printed name and
#   the meaning of the signature (review, approval, responsibility).
# custom:
#   id: MLG-APPR-013
#   severity: high
#   controls: [21CFR11.50]
#   remediation: Have the approver sign again with their printed name and the meaning of the signature.
#   expected: >-
#     Every approval for this environment shows the signer's printed name and
#     the meaning of the signature, both non-empty.
violation contains v if {
	some r in relevant
	some key in ["printed_name", "meaning"]
	not lib.has_text(r, key)
	v := {
		"id": "MLG-APPR-013",
		"severity": "high",
		"controls": ["21CFR11.50"],
		"remediation": "Have the approver sign again with their printed name and the meaning of the signature.",
		"message": sprintf("approval %s by %s has %s %s; expected a non-empty %s", [lib.s(r, "path"), lib.s(r, "signer_id"), key, lib.s(r, key), key]),
		"subject": lib.s(r, "path"),
	}
}

# --------------------------------------------------------------------------
# Separation of duties (21 CFR 11.10(g), EU AI Act Art. 14): the people who
# produced the model and its evidence do not approve it.

# Shown in messages so that every finding about an approval carries its 11.50
# manifestation: printed name, meaning (role), date and time of signing.
manifest(r) := r.manifestation if lib.has_text(r, "manifestation")

else := sprintf("%s, %s as %s, signed %s", [lib.s(r, "printed_name"), lib.s(r, "meaning"), lib.s(r, "role"), lib.s(r, "signed_at")])

model_sig := lib.evidence("model_signature")

# A certificate or keyless identity (an email or URI), lowercased; key ids are
# unique per signer in the trust policy, so they name nobody else.
identity_name(x) := lower(x.identity) if {
	x.identity_source in {"certificate", "keyless"}
	is_string(x.identity)
}

# Every name the model signer goes by: the trust policy id and the certificate
# or keyless identity.
model_signers contains lower(model_sig.signer_id) if {
	model_sig.authenticated == true
	is_string(model_sig.signer_id)
}

# (Bound, then checked: the compiled engine (regorus's VM) puts the value of an undefined call
# into a set, so `contains identity_name(model_sig)` would add a name no one has.)
model_signers contains n if {
	model_sig.authenticated == true
	n := identity_name(model_sig)
	is_string(n)
}

# Every name an approver goes by: the claimed signer id (checked against the
# trust policy) and the verified certificate or keyless identity.
names(r) := {n | n := person(r); is_string(n)} | {n | n := identity_name(r); is_string(n)}

# METADATA
# title: Approver also signed the model
# description: >-
#   An approval is signed by the person (or identity) who signed the model with
#   model-signing: the model's producer cannot approve it.
# custom:
#   id: MLG-APPR-015
#   severity: critical
#   controls: [21CFR11.10(g), EUAIA-14]
#   remediation: Have an approver independent of the model signing sign the approval, or sign the model with the build identity.
#   expected: >-
#     No approval for this environment, other than an authorship signature, is
#     signed by a person or identity who also signed the model.
violation contains v if {
	some r in relevant
	not r.meaning == "authorship"
	same := names(r) & model_signers
	count(same) > 0
	v := {
		"id": "MLG-APPR-015",
		"severity": "critical",
		"controls": ["21CFR11.10(g)", "EUAIA-14"],
		"remediation": "Have an approver independent of the model signing sign the approval, or sign the model with the build identity.",
		"message": sprintf("approval %s (%s) is signed by %s, who also signed the model (%s); expected an approver other than the model signer", [lib.s(r, "path"), manifest(r), lib.s(r, "signer_id"), lib.join(sort(same))]),
		"subject": lib.s(r, "path"),
	}
}

bias := lib.evidence("bias_audit")

bias_path := bias.path if is_string(bias.path)

# Who wrote the bias audit: every verified signer who declared it authored
# (predicate authored[]), and the record's own author field when it has one.
bias_authors contains p if {
	some a in records
	a.verified == true
	bias_path in lib.list_of(a, "authored")
	p := person(a)
	is_string(p)
}

bias_authors contains lower(bias.author) if is_string(bias.author)

# METADATA
# title: Approver authored the bias audit
# description: >-
#   An approval is signed by an author of the bias audit it approves (declared
#   by a verified authorship signature or by the audit record): the person
#   whose work is judged cannot approve it.
# custom:
#   id: MLG-APPR-016
#   severity: critical
#   controls: [21CFR11.10(g), EUAIA-14, GMLP-8]
#   remediation: Have someone who did not author the bias audit give the approval.
#   expected: >-
#     No approval for this environment, other than an authorship signature, is
#     signed by an author of the bias audit.
violation contains v if {
	some r in relevant
	not r.meaning == "authorship"
	person(r) in bias_authors
	v := {
		"id": "MLG-APPR-016",
		"severity": "critical",
		"controls": ["21CFR11.10(g)", "EUAIA-14", "GMLP-8"],
		"remediation": "Have someone who did not author the bias audit give the approval.",
		"message": sprintf("approval %s (%s) is signed by %s, an author of the bias audit %s; expected an approver independent of the bias audit", [lib.s(r, "path"), manifest(r), lib.s(r, "signer_id"), bias_path]),
		"subject": lib.s(r, "path"),
	}
}

# Some statement digest is held by two records: counted once, so the pairs below
# are looked at only when there is a duplicate (the rule stays linear otherwise).
statement_digests := [d | some r in records; d := r.statement_digest; is_string(d)]

duplicated_statements if count(statement_digests) > count({d | some d in statement_digests})

# METADATA
# title: Duplicated approval
# description: >-
#   Two approval files hold the same signed statement (a copy, or a re-wrapped
#   bundle). A signature counts once; a duplicate is refused so that nobody can
#   believe it was counted twice.
# custom:
#   id: MLG-APPR-017
#   severity: high
#   controls: [21CFR11.70, 21CFR11.10(e)]
#   remediation: Remove the duplicate approval file; have the second signer sign their own approval.
#   expected: >-
#     Every approval file holds its own signed statement: no statement appears
#     in two files.
violation contains v if {
	duplicated_statements
	some r in records
	some other in records
	is_string(r.statement_digest)
	r.statement_digest == other.statement_digest
	r.path > other.path
	v := {
		"id": "MLG-APPR-017",
		"severity": "high",
		"controls": ["21CFR11.70", "21CFR11.10(e)"],
		"remediation": "Remove the duplicate approval file; have the second signer sign their own approval.",
		"message": sprintf("approval %s duplicates %s (%s): the same signed statement; each signature counts once", [lib.s(r, "path"), lib.s(other, "path"), manifest(r)]),
		"subject": lib.s(r, "path"),
	}
}

# METADATA
# title: Approval signed with a credential revoked later
# description: >-
#   The approval was signed before its signer's key or identity was revoked in
#   the trust policy. It still counts (revocation is not retroactive); the
#   finding records that the credential is revoked now, with when and why.
# custom:
#   id: MLG-APPR-018
#   severity: medium
#   controls: [21CFR11.10(d), 21CFR11.70]
#   remediation: If the revocation reason is keyCompromise, have the approver sign again with their new credential.
#   expected: >-
#     No verified approval for this environment was signed with a key or
#     identity that the trust policy has revoked since.
warning contains v if {
	some r in relevant
	r.verified == true
	r.key_status == "revoked_after_signing"
	v := {
		"id": "MLG-APPR-018",
		"severity": "medium",
		"controls": ["21CFR11.10(d)", "21CFR11.70"],
		"remediation": "If the revocation reason is keyCompromise, have the approver sign again with their new credential.",
		"message": sprintf("approval %s (%s) was signed with %s %s, revoked later at %s (%s); counted, since it was signed before the revocation", [lib.s(r, "path"), manifest(r), lib.s(r, "identity_source"), lib.s(r, "identity"), lib.s(r, "key_revoked_at"), lib.s(r, "key_revocation_reason")]),
		"subject": lib.s(r, "path"),
	}
}

# The credential stopped vouching for the approval: its signing time is only
# the signer's claim (no trusted timestamp), and the credential's validity
# ended (a key's notAfter, a certificate's expiry, a revocation for a reason
# other than compromise) at key_valid_until, at or before the evaluation.
credential_ended(r) if {
	is_number(r.key_valid_until_ns)
	r.key_valid_until_ns <= lib.now_ns
}

ended_how(r) := sprintf("revoked, %s", [lib.s(r, "key_revocation_reason")]) if {
	r.key_revoked_at_ns == r.key_valid_until_ns
} else := "end of its validity period"

# METADATA
# title: Approval credential ended and its signing time is only claimed
# description: >-
#   The approval was signed with a key, certificate or identity whose validity
#   has ended (notAfter, certificate expiry) or that was revoked for a reason
#   other than compromise, and no trusted time (an RFC 3161 timestamp of a
#   timestamping authority the trust policy lists, or a keyless bundle's
#   transparency-log time) shows that it was signed before. The signing time
#   it carries is the signer's claim, so it no longer counts.
# custom:
#   id: MLG-APPR-022
#   severity: high
#   controls: [21CFR11.10(d), 21CFR11.70]
#   remediation: Have the approver sign again with a valid credential, with `mlgate approve --tsa URL` so that a later revocation or expiry does not void the signature.
#   expected: >-
#     Every verified approval for this environment carries a trusted signing
#     time, or was signed with a credential still valid at the evaluation
#     time.
violation contains v if {
	some r in relevant
	r.verified == true
	credential_ended(r)
	v := {
		"id": "MLG-APPR-022",
		"severity": "high",
		"controls": ["21CFR11.10(d)", "21CFR11.70"],
		"remediation": "Have the approver sign again with a valid credential, with `mlgate approve --tsa URL` so that a later revocation or expiry does not void the signature.",
		"message": sprintf("approval %s by %s was signed with %s %s, valid only until %s (%s); its signing time %s is the signer's claim, with no trusted timestamp; expected a timestamp of a listed timestamping authority showing it was signed before, or a credential valid at the evaluation time %s", [lib.s(r, "path"), lib.s(r, "signer_id"), lib.s(r, "identity_source"), lib.s(r, "identity"), lib.s(r, "key_valid_until"), ended_how(r), lib.s(r, "signed_at"), lib.s(input, "evaluated_at")]),
		"subject": lib.s(r, "path"),
	}
}

min_disciplines := cfg.min_disciplines if is_number(cfg.min_disciplines)

effective_roles := {r.role | some r in effective_here}

effective_people := {p | some r in effective_here; p := person(r); is_string(p)}

# METADATA
# title: Approvals not multi-disciplinary
# description: >-
#   The verified, authorised approvals for this environment come from fewer
#   distinct roles, or fewer distinct people, than approvals.min_disciplines:
#   the release was not reviewed by a multi-disciplinary team. Judged once
#   every required signature is given (a missing one is MLG-APPR-004); the
#   people count applies when approvals.distinct_people is true.
# custom:
#   id: MLG-APPR-019
#   severity: high
#   controls: [GMLP-1, EUAIA-14]
#   remediation: Have people of other disciplines (e.g. quality assurance and clinical safety) review or approve the release.
#   expected: >-
#     The verified, authorised approvals for this environment come from at
#     least approvals.min_disciplines different roles and, when
#     approvals.distinct_people is true, from at least as many different
#     people.
violation contains v if {
	count(unfilled) == 0
	too_few_disciplines
	v := {
		"id": "MLG-APPR-019",
		"severity": "high",
		"controls": ["GMLP-1", "EUAIA-14"],
		"remediation": "Have people of other disciplines (e.g. quality assurance and clinical safety) review or approve the release.",
		"message": sprintf("effective approvals come from %d role(s) (%s) and %d person(s); environment %s requires at least %s of each", [count(effective_roles), lib.join(sort(effective_roles)), count(effective_people), lib.s(input, "environment"), lib.s(cfg, "min_disciplines")]),
	}
}

too_few_disciplines if not enough_roles

too_few_disciplines if {
	distinct_required
	not enough_people
}

# Positive forms, negated above: `not count(xs) >= min_disciplines` is undefined
# on OPA when min_disciplines is (see lib.env_known), and would never fire.
enough_roles if count(effective_roles) >= min_disciplines

enough_people if count(effective_people) >= min_disciplines
