# Signed waivers: a named person's time-limited acceptance of the risk of
# named violations for one model (EU AI Act Art. 14 human oversight; 21 CFR
# 11.50 signature manifestation). The decision (decision.rego) turns each
# violation a waiver covers into a warning that says who waived it, until when
# and why; everything else about the decision stays as it was.
#
# A waiver applies only when ALL of these hold, else it changes nothing:
#   * its signature verified against an approver of the trust policy
#     (evidence.waivers.records[].verified, established by mlgate, not here);
#   * the environment accepts waivers (waivers.max_days in its data) and the
#     signer's role is one it lets accept risk (waivers.roles), authorised for
#     that signer in the trust policy, who may act in this environment;
#   * it names this model's digest and this environment;
#   * the signer's credential still vouches for it: a credential whose validity
#     ended or that was revoked (key_valid_until) counts only with a trusted
#     signing time (RFC 3161 timestamp, transparency log), established by mlgate;
#   * the evaluation time lies in [signed_at, expires_at) and the waiver is
#     valid for at most waivers.max_days;
#   * it signed this release as it is now (release_binding "bound": name,
#     version, owner, storage URIs and manifest; a legacy waiver that binds no
#     release identity never applies);
#   * separation of duties: its signer is not the release owner, did not sign
#     the model, and is not the MLflow run's user who trained it;
#   * per rule: the rule id is not in waivers.not_waivable (an entry ending in
#     "-" is a prefix: "MLG-APPR-" covers every approval rule). Configuration
#     rules (MLG-CFG-*) can never be waived. A rule in waivers.two_person
#     (same prefix form) is waived only by active waivers of two distinct
#     signers.
package mlgate

import rego.v1

import data.mlgate.lib
import data.mlgate.rules.approvals

waiver_cfg := lib.thresholds("waivers")

waiver_records := lib.list_of(lib.evidence("waivers"), "records")

waiver_max_ns := waiver_cfg.max_days * lib.ns_per_day if is_number(waiver_cfg.max_days)

# Why a waiver record cannot apply, "" when it can (the first reason found).
waiver_problem(r) := sprintf("not verified: %s", [lib.s(r, "reason")]) if {
	not r.verified == true
} else := "does not bind the release identity (a legacy waiver); sign it again with this version of mlgate waive" if {
	not r.release_binding == "bound"
	not r.release_binding == "changed"
} else := sprintf("no longer matches the release: %s", [trim_prefix(concat("; ", [sprintf("%v", [c]) | some c in lib.list_of(r, "release_changes")]), "")]) if {
	r.release_binding == "changed"
} else := sprintf("signed by %s, the release owner (separation of duties: the owner cannot accept the risk of their own release)", [lib.s(r, "signer_id")]) if {
	approvals.person(r) == approvals.owner
} else := sprintf("signed by %s, who also signed the model (separation of duties)", [lib.s(r, "signer_id")]) if {
	count(approvals.names(r) & approvals.model_signers) > 0
} else := sprintf("signed by %s, who trained the model (the MLflow run's user; separation of duties)", [lib.s(r, "signer_id")]) if {
	trained_by(r)
} else := sprintf("environment %s accepts no waivers (no waivers.max_days in its data)", [lib.s(input, "environment")]) if {
	not waiver_max_ns
} else := sprintf("waives model %s, not this model %s", [lib.short(r, "subject_digest"), substring(sprintf("%v", [lib.model_digest]), 0, 12)]) if {
	object.get(r, "subject_digest", null) != lib.model_digest
} else := sprintf("is for environment %s, not %s", [lib.s(r, "environment"), lib.s(input, "environment")]) if {
	object.get(r, "environment", null) != input.environment
} else := sprintf("role %s may not accept risk in %s (waivers.roles: %s)", [lib.s(r, "role"), lib.s(input, "environment"), lib.join(lib.list_of(waiver_cfg, "roles"))]) if {
	not object.get(r, "role", null) in lib.list_of(waiver_cfg, "roles")
} else := sprintf("the trust policy does not give %s the role %s", [lib.s(r, "signer_id"), lib.s(r, "role")]) if {
	not r.role_authorised == true
} else := sprintf("the trust policy does not let %s act in %s", [lib.s(r, "signer_id"), lib.s(input, "environment")]) if {
	not r.environment_authorised == true
} else := sprintf("signed with %s %s, valid only until %s, and its signing time is the signer's claim (no trusted timestamp)", [lib.s(r, "identity_source"), lib.s(r, "identity"), lib.s(r, "key_valid_until")]) if {
	is_number(r.key_valid_until_ns)
	r.key_valid_until_ns <= lib.now_ns
} else := "signed after the evaluation time" if {
	not signed_by_now(r)
} else := sprintf("expired at %s", [lib.s(r, "expires_at")]) if {
	not unexpired_now(r)
} else := sprintf("valid for %v days, more than waivers.max_days %v", [round((r.expires_at_ns - r.signed_at_ns) / lib.ns_per_day * 10) / 10, waiver_cfg.max_days]) if {
	is_number(r.expires_at_ns)
	is_number(r.signed_at_ns)
	r.expires_at_ns - r.signed_at_ns > waiver_max_ns
} else := ""

# Positive forms, negated in waiver_problem: `not r.signed_at_ns <= lib.now_ns`
# is undefined on OPA when a time is missing (see lib.env_known), and such a
# waiver would apply there.
signed_by_now(r) if r.signed_at_ns <= lib.now_ns

unexpired_now(r) if lib.now_ns < r.expires_at_ns

# Who trained the model, as the provenance's MLflow run records it.
trainer := lower(lib.evidence("provenance").mlflow.run_user) if is_string(lib.evidence("provenance").mlflow.run_user)

# The signer trained the model: the MLflow run's user is their id, or (MLflow records the
# login of whoever ran it, e.g. "jane.roe") the local part of it.
trained_by(r) if approvals.person(r) == trainer

trained_by(r) if {
	is_string(trainer)
	not contains(trainer, "@")
	split(approvals.person(r), "@")[0] == trainer
}

# A rule whose waiver needs two distinct signers in this environment.
two_person(id) if {
	some entry in lib.list_of(waiver_cfg, "two_person")
	is_string(entry)
	entry == id
}

two_person(id) if {
	some entry in lib.list_of(waiver_cfg, "two_person")
	is_string(entry)
	endswith(entry, "-")
	startswith(id, entry)
}

# A rule id no waiver can touch in this environment.
not_waivable(id) if startswith(id, "MLG-CFG-")

not_waivable(id) if {
	some entry in lib.list_of(waiver_cfg, "not_waivable")
	is_string(entry)
	entry == id
}

not_waivable(id) if {
	some entry in lib.list_of(waiver_cfg, "not_waivable")
	is_string(entry)
	endswith(entry, "-")
	startswith(id, entry)
}

# The waivers that apply now, in path order.
active_waivers := [r | some r in waiver_records; waiver_problem(r) == ""]

# The waiver covering a violation: the first active waiver naming its rule id
# (for a two-person rule, only once active waivers of two distinct signers name it).
waiver_covering(v) := r if {
	not not_waivable(v.id)
	found := [x | some x in active_waivers; v.id in lib.list_of(x, "rules")]
	count(found) > 0
	enough_signers(v.id, found)
	r := found[0]
}

enough_signers(id, _) if not two_person(id)

enough_signers(id, found) if {
	two_person(id)
	count({p | some x in found; p := approvals.person(x); is_string(p)}) >= 2
}

# The violation as a warning, marked with the waiver that covers it.
waived_warning(v, r) := object.union(v, {
	"message": sprintf("WAIVED by %s (%s) until %s [%s]: %s", [lib.s(r, "printed_name"), lib.s(r, "role"), lib.s(r, "expires_at"), lib.s(r, "path"), v.message]),
	"waiver": {
		"path": lib.s(r, "path"),
		"signer_id": lib.s(r, "signer_id"),
		"printed_name": lib.s(r, "printed_name"),
		"role": lib.s(r, "role"),
		"signed_at": lib.s(r, "signed_at"),
		"expires_at": lib.s(r, "expires_at"),
		"justification": lib.s(r, "justification"),
	},
})

# Per waiver record: whether it applied, to which rules, and why not.
waiver_report(violations) := [entry |
	some r in waiver_records
	why := waiver_problem(r)
	named := lib.list_of(r, "rules")
	hit := sort([id | some id in named; some v in violations; v.id == id; not not_waivable(id)])
	blocked := sort([id | some id in named; not_waivable(id)])
	waived := [id | some id in hit; why == ""; enough_signers(id, naming(id))]
	short := [id | some id in hit; why == ""; not enough_signers(id, naming(id))]
	entry := {
		"path": lib.s(r, "path"),
		"rules": named,
		"signer_id": object.get(r, "signer_id", null),
		"printed_name": object.get(r, "printed_name", null),
		"role": object.get(r, "role", null),
		"expires_at": object.get(r, "expires_at", null),
		"justification": object.get(r, "justification", null),
		"applied": count(waived) > 0,
		"waived": waived,
		"reason": waiver_reason_text(why, [id | some id in hit; not id in short], blocked, short),
	}
]

# The active waivers naming a rule id.
naming(id) := [x | some x in active_waivers; id in lib.list_of(x, "rules")]

waiver_reason_text(why, _, _, _) := why if why != ""

waiver_reason_text(why, hit, _, short) := sprintf("%s need waivers signed by two distinct people in %s (waivers.two_person)", [lib.join(short), input.environment]) if {
	why == ""
	count(hit) == 0
	count(short) > 0
}

waiver_reason_text(why, hit, blocked, short) := sprintf("cannot waive %s in %s (waivers.not_waivable)", [lib.join(blocked), input.environment]) if {
	why == ""
	count(hit) == 0
	count(short) == 0
	count(blocked) > 0
}

waiver_reason_text(why, hit, blocked, short) := "names no rule that reported a violation" if {
	why == ""
	count(hit) == 0
	count(short) == 0
	count(blocked) == 0
}

waiver_reason_text(why, hit, _, _) := null if {
	why == ""
	count(hit) > 0
}
