"""Model cards, read unchanged, as the input document's ``evidence.model_card`` facts.

Two formats:

* a Hugging Face model card (``README.md``): optional YAML front matter between ``---`` lines,
  then markdown whose ``#``..``######`` headings follow the official template
  (``huggingface_hub/templates/modelcard_template.md``; both the older ``#``-level and the newer
  ``##``-level editions, and the ``transformers`` Trainer's auto-generated cards);
* Model Card Toolkit JSON (schema v0.0.1 and v0.0.2: ``model_details``, ``model_parameters``,
  ``quantitative_analysis``, ``considerations``).

Headings and fields are mapped onto the canonical section keys of the contract
(docs/input-document.md). A section that holds only a template placeholder
(``[More Information Needed]``, ``{{ ... }}``, the Trainer's "More information needed"), an HTML
comment, template boilerplate or whitespace is *empty*.

Error channels: text that cannot be read (binary, not UTF-8, invalid JSON, invalid or unclosed
YAML front matter) raises :class:`InputError` naming the file and line; a document that parses but
does not conform (MCT ``considerations`` that is a string, a front matter that is a list) is a fact:
``valid: false`` with one-line errors naming the file and the JSON path. Never any other exception.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

from mlgate.canonical import sha256_hex
from mlgate.errors import InputError
from mlgate.safeio import decode_text, parse_json, parse_yaml

FORMAT_HF = "huggingface"
FORMAT_MCT = "model-card-toolkit"
SCHEMA_FILE_MCT = "model_card_toolkit.schema.json"

SECTION_KEYS = (
    "model_details",
    "intended_use",
    "out_of_scope_use",
    "training_data",
    "evaluation_data",
    "evaluation_results",
    "limitations",
    "ethical_considerations",
    "how_to_use",
)
#: At most this many placeholder locations are listed (a hostile card could name thousands).
MAX_PLACEHOLDERS = 100
#: Texts copied into the facts are capped: the input document is hashed and logged on every decision.
MAX_TEXT_CHARS = 2000

# --------------------------------------------------------------------------- placeholders & boilerplate
#: Template placeholders anywhere in a text.
_PLACEHOLDER_RE = re.compile(
    r"\[\s*(?:more\s+information\s+needed|needs\s+more\s+information|more\s+info\s+needed)\s*\]"
    # bounded, brace-free, one line: no quadratic scans on hostile input
    r"|\{\{[^{}\n]{0,300}\}\}|\{%[^{}\n]{0,300}%\}"
    # the template's default Recommendations text is a placeholder, not a recommendation
    r"|users\s+\(both\s+direct\s+and\s+downstream\)\s+should\s+be\s+made\s+aware\s+of\s+the\s+risks,"
    r"\s+biases\s+and\s+limitations\s+of\s+the\s+model\.\s*more\s+information\s+needed\s+for\s+further"
    r"\s+recommendations\.?",
    re.IGNORECASE | re.DOTALL,
)
#: Texts that, when they are all a section says, are a placeholder (Trainer cards: "More information needed").
_WHOLE_PLACEHOLDERS = frozenset(
    {"more information needed", "needs more information", "more info needed", "todo", "tbd", "fixme", "tba"}
)
#: Template text that is neither content nor placeholder.
_BOILERPLATE_RE = re.compile(
    r"use\s+the\s+code\s+below\s+to\s+get\s+started\s+with\s+the\s+model\.?"
    r"|carbon\s+emissions\s+can\s+be\s+estimated\s+using\s+the\s+\[machine\s+learning\s+impact\s+calculator\]"
    r"\([^)]*\)\s+presented\s+in\s+\[lacoste\s+et\s+al\.\s+\(2019\)\]\([^)]*\)\.?"
    r"|click\s+to\s+expand",
    re.IGNORECASE,
)
_COMMENT_RE = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
_TAG_RE = re.compile(r"</?[A-Za-z][^<>\n]{0,500}>")
#: "- **Developed by:**" and "**BibTeX:**" lines: a field label with nothing after it.
_LABEL_ONLY_RE = re.compile(r"^[ \t]*(?:[-*+][ \t]*)?\*\*[^*\n]+\*\*[ \t]*:?[ \t]*$", re.MULTILINE)
_LABEL_RE = re.compile(r"^[ \t]*(?:[-*+][ \t]*)?\*\*([^*\n]+?)[ \t]*:?[ \t]*\*\*")
_HEADING_RE = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*$")
_FENCE_RE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.lower()).split())


def has_placeholder(text: str) -> bool:
    return bool(_PLACEHOLDER_RE.search(text)) or _norm(text) in _WHOLE_PLACEHOLDERS


def is_empty_text(text: str) -> bool:
    """Nothing but comments, placeholders, template boilerplate, bare field labels, tags or whitespace."""
    rest = _COMMENT_RE.sub(" ", text)
    rest = _PLACEHOLDER_RE.sub(" ", rest)
    rest = _BOILERPLATE_RE.sub(" ", rest)
    rest = _TAG_RE.sub(" ", rest)
    rest = _LABEL_ONLY_RE.sub(" ", rest)
    norm = _norm(rest)
    return not norm or norm in _WHOLE_PLACEHOLDERS


def _clip(text: str) -> str:
    text = re.sub(r"\n{3,}", "\n\n", text.strip())
    return text if len(text) <= MAX_TEXT_CHARS else text[: MAX_TEXT_CHARS - 1].rstrip() + "\u2026"


def _block(fmt: str, name: str, data: bytes) -> dict:
    return {
        "present": True,
        "valid": True,
        "authenticated": False,
        "errors": [],
        "path": name,
        "digest": sha256_hex(data),
        "format": fmt,
        "sections": {key: {"present": False, "empty": True} for key in SECTION_KEYS},
        "intended_use": None,
        "out_of_scope_use": None,
        "limitations": None,
        "evaluation_results_present": False,
        "placeholders": [],
        "factors": [],
    }


# --------------------------------------------------------------------------- entry point
def read_model_card(data: bytes, name: str) -> dict:
    """Read a Hugging Face ``README.md`` card or Model Card Toolkit JSON into the ``model_card`` block.

    The format is chosen by the file name (``.json`` is MCT, ``.md``/``.markdown`` is HF) and
    otherwise by content (a JSON object is MCT). The caller sets ``authenticated`` when the card
    came inside a verified envelope, and may replace ``path``/``digest``.
    """
    text = decode_text(data, name)
    lower = name.lower()
    if lower.endswith(".json") or (
        not lower.endswith((".md", ".markdown")) and text.lstrip().startswith("{")
    ):
        return _read_mct(parse_json(data, name), name, data)
    return _read_hf(text, name, data)


# --------------------------------------------------------------------------- Hugging Face
# normalised heading -> (canonical keys, mode). "tree": the heading's own text plus that of its
# sub-headings that map to no key; "own": only the text directly under the heading.
_HF_HEADINGS: dict[str, tuple[tuple[str, ...], str]] = {
    "model details": (("model_details",), "tree"),
    "model description": (("model_details",), "tree"),
    "uses": (("intended_use",), "tree"),
    "direct use": (("intended_use",), "tree"),
    "downstream use": (("intended_use",), "tree"),
    "intended use": (("intended_use",), "tree"),
    "intended uses": (("intended_use",), "tree"),
    "intended use cases": (("intended_use",), "tree"),
    "primary intended uses": (("intended_use",), "tree"),
    "intended uses limitations": (("intended_use", "limitations"), "tree"),  # Trainer cards
    "out of scope use": (("out_of_scope_use",), "tree"),
    "out of scope uses": (("out_of_scope_use",), "tree"),
    "out of scope use cases": (("out_of_scope_use",), "tree"),
    "misuse and out of scope use": (("out_of_scope_use",), "tree"),
    "misuse malicious use and out of scope use": (("out_of_scope_use",), "tree"),
    "training data": (("training_data",), "tree"),
    "training dataset": (("training_data",), "tree"),
    "training and evaluation data": (("training_data", "evaluation_data"), "tree"),  # Trainer cards
    "testing data": (("evaluation_data",), "tree"),
    "test data": (("evaluation_data",), "tree"),
    "evaluation data": (("evaluation_data",), "tree"),
    "evaluation dataset": (("evaluation_data",), "tree"),
    "results": (("evaluation_results",), "tree"),
    "evaluation results": (("evaluation_results",), "tree"),
    "evaluation": (("evaluation_results",), "own"),
    "bias risks and limitations": (("limitations", "ethical_considerations"), "tree"),
    "risks and limitations": (("limitations",), "tree"),
    "limitations": (("limitations",), "tree"),
    "known limitations": (("limitations",), "tree"),
    "limitations and bias": (("limitations", "ethical_considerations"), "tree"),
    "ethical considerations": (("ethical_considerations",), "tree"),
    "ethical considerations and risks": (("ethical_considerations",), "tree"),
    "bias": (("ethical_considerations",), "tree"),
    "how to get started with the model": (("how_to_use",), "tree"),
    "how to get started": (("how_to_use",), "tree"),
    "how to use": (("how_to_use",), "tree"),
    "usage": (("how_to_use",), "tree"),
}


def _heading_key(title: str) -> str:
    title = re.sub(r"\[\s*optional\s*\]", " ", title, flags=re.IGNORECASE)
    return _norm(title)


def _clean_title(title: str) -> str:
    title = re.sub(r"\[\s*optional\s*\]", " ", title, flags=re.IGNORECASE)
    title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title)  # links
    title = title.replace("**", "").replace("__", "").replace("`", "")
    return " ".join(title.split()) or "(untitled)"


class _Section:
    __slots__ = ("level", "title", "body", "keys", "mode")

    def __init__(self, level: int, title: str):
        self.level = level
        self.title = title
        self.body: list[str] = []
        mapped = _HF_HEADINGS.get(_heading_key(title))
        self.keys, self.mode = mapped if mapped else ((), "tree")


def _split_front_matter(text: str, name: str) -> tuple[str | None, str, int]:
    """(front matter YAML or None, markdown, line number where the markdown starts)."""
    lines = text.split("\n")
    if not lines or lines[0].rstrip() != "---":
        return None, text, 1
    for i in range(1, len(lines)):
        if lines[i].rstrip() in ("---", "..."):
            return "\n".join(lines[1:i]), "\n".join(lines[i + 1 :]), i + 2
    raise InputError("front matter opened by '---' on line 1 is never closed by a '---' line", file=name, field="front matter")


def _sections(markdown: str) -> list[_Section]:
    markdown = _COMMENT_RE.sub("", markdown)  # a heading inside a comment is no heading
    sections = [_Section(0, "preamble")]
    fence: str | None = None
    for line in markdown.split("\n"):
        m = _FENCE_RE.match(line)
        if m:
            marker = m.group(1)
            if fence is None:
                fence = marker
            elif marker[0] == fence[0] and len(marker) >= len(fence):
                fence = None
            sections[-1].body.append(line)
            continue
        if fence is None:
            h = _HEADING_RE.match(line)
            if h:
                title = re.sub(r"[ \t]+#+$", "", h.group(2) or "").strip()
                sections.append(_Section(len(h.group(1)), title))
                continue
        sections[-1].body.append(line)
    return sections


def _texts_for(sections: list[_Section], index: int) -> list[tuple[str, str]]:
    """(heading line, body) pairs a mapped heading contributes: its own body, plus the
    unmapped sub-headings' in tree mode. A sub-heading's title alone is no content."""
    sec = sections[index]
    texts = [("", "\n".join(sec.body))]
    if sec.mode != "tree" or sec.level == 0:
        return texts
    j = index + 1
    while j < len(sections) and sections[j].level > sec.level:
        sub = sections[j]
        if sub.keys:  # mapped elsewhere: skip it and its whole subtree
            k = j + 1
            while k < len(sections) and sections[k].level > sub.level:
                k += 1
            j = k
            continue
        texts.append((f"{'#' * sub.level} {sub.title}", "\n".join(sub.body)))
        j += 1
    return texts


def _walk(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Every (json path, leaf) under ``value``, iteratively (no recursion limit on hostile input)."""
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, dict):
            for k in reversed(list(item)):
                stack.append((f"{where}.{k}" if where else str(k), item[k]))
        elif isinstance(item, list):
            for i in reversed(range(len(item))):
                stack.append((f"{where}[{i}]", item[i]))
        else:
            yield where, item


def _read_hf(text: str, name: str, data: bytes) -> dict:
    block = _block(FORMAT_HF, name, data)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    front_text, markdown, _ = _split_front_matter(text, name)
    placeholders: list[str] = []

    meta: Any = {}
    if front_text is not None:
        try:
            # The leading newline keeps YAML line numbers equal to the file's (front matter starts on line 2).
            meta = parse_yaml("\n" + front_text, name)
        except InputError as exc:
            raise InputError(exc.message, file=name, field="front matter") from None
        if meta is None:
            meta = {}
        if not isinstance(meta, dict):
            block["errors"].append(f"{name}: front matter: expected a YAML mapping, got {type(meta).__name__}")
            meta = {}
    for where, leaf in _walk(meta, ""):
        if isinstance(leaf, str) and has_placeholder(leaf):
            placeholders.append(f"front matter: {where}")
    block["evaluation_results_present"] = _model_index_results(meta.get("model-index"), name, block["errors"])

    sections = _sections(markdown)
    collected: dict[str, list[tuple[str, str]]] = {key: [] for key in SECTION_KEYS}
    for i, sec in enumerate(sections):
        for key in sec.keys:
            block["sections"][key]["present"] = True
            collected[key].extend(_texts_for(sections, i))
        _collect_placeholders(sec, placeholders)

    for key in SECTION_KEYS:
        parts = [(head, body) for head, body in collected[key] if not is_empty_text(body)]
        block["sections"][key]["empty"] = not parts
        if key in ("intended_use", "out_of_scope_use", "limitations") and parts:
            block[key] = _clip("\n\n".join(f"{head}\n\n{body.strip()}" if head else body.strip() for head, body in parts))
    if not block["sections"]["evaluation_results"]["empty"]:
        block["evaluation_results_present"] = True

    block["placeholders"] = list(dict.fromkeys(placeholders))[:MAX_PLACEHOLDERS]
    block["factors"] = _factors(sections)
    block["valid"] = not block["errors"]
    return block


_FACTOR_RE = re.compile(r"`([A-Za-z][A-Za-z0-9_.-]{0,63})`")
MAX_FACTORS = 32


def _factors(sections: list[_Section]) -> list[str]:
    """The sensitive attributes the card disaggregates by: the names written in backticks in its
    Factors section (the Hugging Face template's ``#### Factors``: "the things the model card is
    disaggregating by"), lowercased. Free text names nothing the gate can check; a card that
    wants an attribute audited writes it as `ethnicity`."""
    names: list[str] = []
    for sec in sections:
        if _heading_key(sec.title) == "factors":
            names.extend(m.group(1).lower() for m in _FACTOR_RE.finditer("\n".join(sec.body)))
    return sorted(set(names))[:MAX_FACTORS]


def _collect_placeholders(sec: _Section, out: list[str]) -> None:
    title = _clean_title(sec.title)
    body = "\n".join(sec.body)
    if not _PLACEHOLDER_RE.search(body):
        if body.strip() and _norm(body) in _WHOLE_PLACEHOLDERS:
            out.append(title)
        return
    for line in sec.body:
        if _PLACEHOLDER_RE.search(line):
            label = _LABEL_RE.match(line)
            out.append(f"{title}: {_clean_title(label.group(1))}" if label else title)
    if not any(_PLACEHOLDER_RE.search(line) for line in sec.body):
        out.append(title)  # a placeholder spanning lines


def _model_index_results(model_index: Any, name: str, errors: list[str]) -> bool:
    """True when front matter ``model-index`` reports at least one metric with a value."""
    if model_index is None:
        return False
    if not isinstance(model_index, list):
        errors.append(f"{name}: front matter.model-index: expected a list, got {type(model_index).__name__}")
        return False
    found = False
    for i, entry in enumerate(model_index):
        if not isinstance(entry, dict):
            errors.append(f"{name}: front matter.model-index[{i}]: expected a mapping, got {type(entry).__name__}")
            continue
        results = entry.get("results", [])
        if not isinstance(results, list):
            errors.append(f"{name}: front matter.model-index[{i}].results: expected a list, got {type(results).__name__}")
            continue
        for j, res in enumerate(results):
            metrics = res.get("metrics", []) if isinstance(res, dict) else None
            if not isinstance(metrics, list):
                errors.append(f"{name}: front matter.model-index[{i}].results[{j}].metrics: expected a list")
                continue
            for metric in metrics:
                if isinstance(metric, dict) and metric.get("value") is not None and not (
                    isinstance(metric.get("value"), str) and has_placeholder(metric["value"])
                ):
                    found = True
    return found


# --------------------------------------------------------------------------- Model Card Toolkit
_MCT_TOP_LEVEL = ("model_details", "model_parameters", "quantitative_analysis", "considerations")
_EVAL_DATA_RE = re.compile(r"\b(?:eval|evaluation|test|testing|validation|holdout|hold-out)\b", re.IGNORECASE)


def _described(value: Any, path: str) -> list[tuple[str, str]]:
    """(json path, text) of a list of strings or of objects with a description (name/mitigation for risks)."""
    out: list[tuple[str, str]] = []
    if not isinstance(value, list):
        return out
    for i, item in enumerate(value):
        if isinstance(item, str):
            out.append((f"{path}[{i}]", item))
        elif isinstance(item, dict):
            for field in ("description", "name", "mitigation_strategy"):
                if isinstance(item.get(field), str):
                    out.append((f"{path}[{i}].{field}", item[field]))
    return out


def _read_mct(doc: Any, name: str, data: bytes) -> dict:
    from mlgate import schemas

    block = _block(FORMAT_MCT, name, data)
    errors: list[str] = block["errors"]
    if not isinstance(doc, dict):
        errors.append(f"{name}: $: expected a Model Card Toolkit JSON object, got {type(doc).__name__}")
        block["valid"] = False
        return block
    if not any(k in doc for k in _MCT_TOP_LEVEL):
        errors.append(f"{name}: $: none of {', '.join(_MCT_TOP_LEVEL)} is present")
    errors.extend(schemas.messages(SCHEMA_FILE_MCT, doc, name))

    def obj(value: Any) -> dict:
        return value if isinstance(value, dict) else {}

    details = obj(doc.get("model_details"))
    params = obj(doc.get("model_parameters"))
    qa = obj(doc.get("quantitative_analysis"))
    cons = obj(doc.get("considerations"))

    texts: dict[str, list[tuple[str, str]]] = {key: [] for key in SECTION_KEYS}
    present = {key: False for key in SECTION_KEYS}

    if "model_details" in doc:
        present["model_details"] = True
        texts["model_details"] = [
            (f"model_details.{k}", v) for k, v in _walk(details, "") if isinstance(v, str) and not k.startswith("documentation")
        ]
    if "documentation" in details:
        present["how_to_use"] = True
        if isinstance(details["documentation"], str):
            texts["how_to_use"] = [("model_details.documentation", details["documentation"])]
    for key, fields in (
        ("intended_use", ("use_cases", "users")),
        ("limitations", ("limitations",)),
        ("ethical_considerations", ("ethical_considerations",)),
    ):
        for field in fields:
            if field in cons:
                present[key] = True
                texts[key].extend(_described(cons[field], f"considerations.{field}"))

    if "data" in params:
        data_field = params["data"]
        if isinstance(data_field, dict):  # schema v0.0.1: {"train": {...}, "eval": {...}}
            for split, key in (("train", "training_data"), ("eval", "evaluation_data")):
                if split in data_field:
                    present[key] = True
                    texts[key].extend(
                        (f"model_parameters.data.{split}.{k}", v)
                        for k, v in _walk(obj(data_field[split]), "")
                        if isinstance(v, str)
                    )
        elif isinstance(data_field, list):  # schema v0.0.2: a list of datasets
            for i, ds in enumerate(data_field):
                ds = obj(ds)
                label = " ".join(v for v in (ds.get("name"), ds.get("description"), ds.get("link")) if isinstance(v, str))
                key = "evaluation_data" if _EVAL_DATA_RE.search(label) else "training_data"
                present[key] = True
                texts[key].extend(
                    (f"model_parameters.data[{i}].{f}", ds[f]) for f in ("name", "description") if isinstance(ds.get(f), str)
                )

    metrics = qa.get("performance_metrics")
    if "performance_metrics" in qa:
        present["evaluation_results"] = True
        for i, m in enumerate(metrics if isinstance(metrics, list) else []):
            m = obj(m)
            value = m.get("value")
            if isinstance(m.get("type"), str) and value is not None and not isinstance(value, (bool, dict, list)):
                texts["evaluation_results"].append((f"quantitative_analysis.performance_metrics[{i}]", f"{m['type']}: {value}"))
    block["evaluation_results_present"] = any(not is_empty_text(t) for _, t in texts["evaluation_results"])

    for key in SECTION_KEYS:
        parts = [t for _, t in texts[key] if not is_empty_text(t)]
        block["sections"][key] = {"present": present[key], "empty": not parts}
        if key in ("intended_use", "out_of_scope_use", "limitations") and parts:
            block[key] = _clip("\n".join(p.strip() for p in parts))

    block["placeholders"] = list(
        dict.fromkeys(where for where, leaf in _walk(doc, "") if isinstance(leaf, str) and has_placeholder(leaf))
    )[:MAX_PLACEHOLDERS]
    block["valid"] = not errors
    return block
