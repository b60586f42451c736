# The model card: the document that tells users what the model is for, what it
# must not be used for, and how it was evaluated (GMLP principle 9, EU AI Act
# Art. 11 and 13). Sections are judged by their canonical keys (see
# docs/input-document.md); which ones are required is set per environment in
# model_card.required_sections.
package mlgate.rules.model_card

import rego.v1

import data.mlgate.lib

card := lib.evidence("model_card")

path := lib.s(card, "path")

sections := object.get(card, "sections", {})

# METADATA
# title: Model card missing
# description: The release names no model card, or its file does not exist.
# custom:
#   id: MLG-CARD-001
#   severity: high
#   controls: [GMLP-9, EUAIA-11, EUAIA-13]
#   remediation: Add a model card (Hugging Face README.md or Model Card Toolkit JSON) and name it under evidence in mlgate.yaml.
#   expected: >-
#     The release carries a model card.
violation contains v if {
	not card.present == true
	v := {
		"id": "MLG-CARD-001",
		"severity": "high",
		"controls": ["GMLP-9", "EUAIA-11", "EUAIA-13"],
		"remediation": "Add a model card (Hugging Face README.md or Model Card Toolkit JSON) and name it under evidence in mlgate.yaml.",
		"message": "no model card in the release; expected a model card named under evidence in mlgate.yaml",
	}
}

# METADATA
# title: Model card invalid
# description: The model card file exists but does not conform to its format.
# custom:
#   id: MLG-CARD-002
#   severity: high
#   controls: [GMLP-9, EUAIA-11]
#   remediation: Fix the errors listed in the message so the card parses as a Hugging Face model card or Model Card Toolkit JSON.
#   expected: >-
#     The model card conforms to its format (a Hugging Face model card or Model
#     Card Toolkit JSON).
violation contains v if {
	card.present == true
	not card.valid == true
	v := {
		"id": "MLG-CARD-002",
		"severity": "high",
		"controls": ["GMLP-9", "EUAIA-11"],
		"remediation": "Fix the errors listed in the message so the card parses as a Hugging Face model card or Model Card Toolkit JSON.",
		"message": sprintf("model card %s does not conform to its format (errors: %s); expected a valid card", [path, lib.join(lib.list_of(card, "errors"))]),
		"subject": path,
	}
}

# A section is filled when the reader found it and it has content.
filled(key) if {
	sections[key].present == true
	sections[key].empty == false
}

section_state(key) := "is empty" if {
	sections[key].present == true
	not sections[key].empty == false
} else := "is missing"

# METADATA
# title: Required model card section missing or empty
# description: >-
#   A section the environment requires (model_card.required_sections) is absent
#   from the card or has no content.
# custom:
#   id: MLG-CARD-003
#   severity: medium
#   controls: [GMLP-9, EUAIA-11, EUAIA-13]
#   remediation: Write the named section in the model card; the Hugging Face template headings map onto the canonical keys listed in docs/input-document.md.
#   expected: >-
#     Every section listed in model_card.required_sections is present in the
#     card and has content.
violation contains v if {
	card.present == true
	some key in lib.list_of(lib.thresholds("model_card"), "required_sections")
	not filled(key)
	v := {
		"id": "MLG-CARD-003",
		"severity": "medium",
		"controls": ["GMLP-9", "EUAIA-11", "EUAIA-13"],
		"remediation": "Write the named section in the model card; the Hugging Face template headings map onto the canonical keys listed in docs/input-document.md.",
		"message": sprintf("model card %s section %s %s; environment %s requires it with content", [path, key, section_state(key), input.environment]),
		"subject": key,
	}
}

# METADATA
# title: Intended use not stated
# description: >-
#   The card does not state the intended use (the clinical task, population and
#   setting). Every environment requires it.
# custom:
#   id: MLG-CARD-004
#   severity: high
#   controls: [GMLP-6, GMLP-9, EUAIA-13]
#   remediation: State the intended use in the card (Uses / Direct Use, or considerations.use_cases).
#   expected: >-
#     The card states its intended use as non-empty text (in every environment).
violation contains v if {
	card.present == true
	not lib.has_text(card, "intended_use")
	v := {
		"id": "MLG-CARD-004",
		"severity": "high",
		"controls": ["GMLP-6", "GMLP-9", "EUAIA-13"],
		"remediation": "State the intended use in the card (Uses / Direct Use, or considerations.use_cases).",
		"message": sprintf("model card %s states no intended use; expected non-empty intended-use text", [path]),
		"subject": path,
	}
}

# METADATA
# title: Out-of-scope use not stated
# description: >-
#   The card does not say what the model must not be used for. Every
#   environment requires it.
# custom:
#   id: MLG-CARD-005
#   severity: high
#   controls: [GMLP-6, GMLP-9, EUAIA-13]
#   remediation: State the out-of-scope uses in the card (Out-of-Scope Use section).
#   expected: >-
#     The card states its out-of-scope uses as non-empty text (in every
#     environment).
violation contains v if {
	card.present == true
	not lib.has_text(card, "out_of_scope_use")
	v := {
		"id": "MLG-CARD-005",
		"severity": "high",
		"controls": ["GMLP-6", "GMLP-9", "EUAIA-13"],
		"remediation": "State the out-of-scope uses in the card (Out-of-Scope Use section).",
		"message": sprintf("model card %s states no out-of-scope use; expected non-empty out-of-scope-use text", [path]),
		"subject": path,
	}
}

# METADATA
# title: Model card placeholder left in
# description: >-
#   A section or field still says [More Information Needed] (or the template's
#   other placeholders). A card with template text is not a reviewed card.
#   Also fires when the input carries no placeholder list at all.
# custom:
#   id: MLG-CARD-006
#   severity: medium
#   controls: [GMLP-9, EUAIA-11]
#   remediation: Replace the template placeholder with the real content, or remove the section if it does not apply.
#   expected: >-
#     The card's placeholder report is present and empty, so no section or field
#     still holds template placeholder text.
violation contains v if {
	card.present == true
	some placeholder in lib.list_of(card, "placeholders")
	v := {
		"id": "MLG-CARD-006",
		"severity": "medium",
		"controls": ["GMLP-9", "EUAIA-11"],
		"remediation": "Replace the template placeholder with the real content, or remove the section if it does not apply.",
		"message": sprintf("model card %s section %v still holds a template placeholder ([More Information Needed]); expected written content", [path, placeholder]),
		"subject": sprintf("%v", [placeholder]),
	}
}

violation contains v if {
	card.present == true
	not is_array(object.get(card, "placeholders", null))
	v := {
		"id": "MLG-CARD-006",
		"severity": "medium",
		"controls": ["GMLP-9", "EUAIA-11"],
		"remediation": "Replace the template placeholder with the real content, or remove the section if it does not apply.",
		"message": sprintf("model card %s has no placeholder report (placeholders is %s); expected the list of sections that still hold template text", [path, lib.s(card, "placeholders")]),
		"subject": path,
	}
}

# METADATA
# title: Limitations not stated
# description: >-
#   Warning only (a required limitations section is enforced by MLG-CARD-003):
#   the card states no limitations.
# custom:
#   id: MLG-CARD-007
#   severity: low
#   controls: [GMLP-9, EUAIA-13]
#   remediation: Describe the known limitations, risks and failure modes in the card.
#   expected: >-
#     The card states its limitations as non-empty text.
warning contains w if {
	card.present == true
	not lib.has_text(card, "limitations")
	w := {
		"id": "MLG-CARD-007",
		"severity": "low",
		"controls": ["GMLP-9", "EUAIA-13"],
		"remediation": "Describe the known limitations, risks and failure modes in the card.",
		"message": sprintf("model card %s states no limitations; expected a limitations text", [path]),
		"subject": path,
	}
}

human_roles := lib.list_of(lib.thresholds("model_card"), "human_roles")

names_human(text) if {
	some role in human_roles
	contains(lower(text), lower(role))
}

# METADATA
# title: Intended use does not describe the human-AI team
# description: >-
#   The intended-use text does not name the person who acts on the model's
#   output (one of model_card.human_roles, e.g. nurse, radiologist), so the
#   performance of the human-AI team cannot have been considered.
# custom:
#   id: MLG-CARD-008
#   severity: medium
#   controls: [GMLP-7, EUAIA-14]
#   remediation: Say in the intended use who receives the output and what they do with it (e.g. "a nurse reviews every flagged patient").
#   expected: >-
#     When the card states an intended use, that text names (case-insensitively)
#     at least one of the roles in model_card.human_roles, the person who acts
#     on the model's output.
violation contains v if {
	card.present == true
	lib.has_text(card, "intended_use")
	not names_human(card.intended_use)
	v := {
		"id": "MLG-CARD-008",
		"severity": "medium",
		"controls": ["GMLP-7", "EUAIA-14"],
		"remediation": "Say in the intended use who receives the output and what they do with it (e.g. \"a nurse reviews every flagged patient\").",
		"message": sprintf("model card %s intended use names none of the human roles %s; expected the person who acts on the output", [path, lib.join(human_roles)]),
		"subject": path,
	}
}
