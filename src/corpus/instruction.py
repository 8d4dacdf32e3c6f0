"""A high-level ML instruction split into its sections, parsed from corpus text or from LLM output.

The paper's instructions have the sections `Data preprocessing:`, `Model architecture:`, `Model training:` and
sometimes `Model prediction:`. Real text varies: "1. Data Preprocessing:", "**Data preprocessing**:",
"## Model training", "Model Architecture and Training:" (one body, two sections), "Prediction and Submission:".
`parse_instruction` maps each heading onto the canonical sections by keywords; a heading it cannot map
("Model Evaluation:", "Visualization:") becomes an `other` section. Text before the first heading (a preamble such
as "From the code, we can gather the following information:") belongs to no section.

    >>> ins = parse_instruction("Data preprocessing:\\n- fill NaN\\nModel architecture and training:\\n- LightGBM")
    >>> ins.preprocessing, ins.architecture == ins.training, ins.is_complete
    ('- fill NaN', True, True)
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field

CORE_SECTIONS: tuple[str, ...] = ("preprocessing", "architecture", "training")
SECTIONS: tuple[str, ...] = (*CORE_SECTIONS, "prediction")
CANONICAL_HEADINGS: dict[str, str] = {
    "preprocessing": "Data preprocessing",
    "architecture": "Model architecture",
    "training": "Model training",
    "prediction": "Model prediction",
}

# Keyword rules, tried in order on each part of a heading ("Model Architecture and Training" has two parts).
# Order matters: "Preprocessing of the training data" is preprocessing, not training.
_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "preprocessing",
        re.compile(
            r"pre-?process|preparation|\bprepar|feature (?:engineering|extraction|selection|creation)"
            r"|data (?:loading|cleaning|processing|augmentation|handling|transformation|pipeline)"
            r"|\bloading\b|augmentation|cleaning|tokeni[sz]ation|encoding"
        ),
    ),
    (
        "architecture",
        re.compile(
            r"architecture|model (?:definition|building|creation|construction|setup|selection|design|structure)"
            r"|\bnetwork\b|^(?:the )?models?$|^model (?:used|details)$"
        ),
    ),
    # noun forms only: "Model Training:" is a heading, "6. Trains three models:" is a step of a plain list
    (
        "training",
        re.compile(r"training|\bfitting\b|optimi[sz]ation|hyper-?parameter|cross-?validation|compilation"),
    ),
    ("prediction", re.compile(r"prediction|inference|submission|\btesting\b|^test\b|output|forecast")),
)
_PART_SPLIT = re.compile(r"\s+(?:and|&)\s+|\s*[,/+]\s*")
_NUMBERING = re.compile(
    r"^(?:step\s*)?(?:(?P<digit>\d{1,2})|(?P<roman>[ivx]{1,4})|(?P<alpha>[a-h]))[.)]\s+|^step\s*(?P<step>\d{1,2})\s*[:.-]\s*",
    re.IGNORECASE,
)
_BULLET = re.compile(r"^[-*•+]\s")
_MAX_HEADING_WORDS = 8  # a mapped heading ("Main information about model architecture and training")
_MAX_OTHER_WORDS = 5  # an unmapped one ("Model Evaluation", "Other Information"); longer ones are sentences


@dataclass(frozen=True)
class Section:
    """One heading and its body; `keys` are the canonical sections it covers (empty for an `other` section)."""

    heading: str
    keys: tuple[str, ...]
    body: str


@dataclass(frozen=True)
class Instruction:
    """An instruction's full text plus its sections (None where the text has no such section)."""

    text: str
    preprocessing: str | None = None
    architecture: str | None = None
    training: str | None = None
    prediction: str | None = None
    sections: tuple[Section, ...] = field(default=(), repr=False)

    @property
    def missing(self) -> tuple[str, ...]:
        """Core sections (preprocessing, architecture, training) that the text lacks."""
        return tuple(key for key in CORE_SECTIONS if not getattr(self, key))

    @property
    def is_complete(self) -> bool:
        """True when preprocessing, architecture and training are all present."""
        return not self.missing

    @property
    def other(self) -> dict[str, str]:
        """Sections that map onto no canonical key ("Model Evaluation", "Visualization"), by heading."""
        return {s.heading: s.body for s in self.sections if not s.keys}

    def render(self) -> str:
        """The instruction in canonical form: one `Heading:` block per section found, in canonical order."""
        blocks = []
        for key in SECTIONS:
            body = getattr(self, key)
            if body:
                blocks.append(f"{CANONICAL_HEADINGS[key]}:\n{body}")
        return "\n\n".join(blocks)


@dataclass(frozen=True)
class _Heading:
    title: str
    keys: tuple[str, ...]
    rest: str
    style: tuple[str, bool]  # (numbering kind: digit/roman/alpha/bullet/"", marked with # or bold)
    indent: int


def classify_heading(title: str) -> tuple[str, ...]:
    """Canonical sections a heading title covers, e.g. "Model Architecture and Training" -> (architecture, training)."""
    keys: list[str] = []
    for part in _PART_SPLIT.split(title.lower().strip()):
        for key, pattern in _RULES:
            if part and pattern.search(part):
                if key not in keys:
                    keys.append(key)
                break
    return tuple(keys)


def _heading(line: str) -> _Heading | None:
    """The heading on `line`, or None when the line is body text."""
    indent = len(line) - len(line.lstrip())
    s = line.strip()
    bullet = bool(_BULLET.match(s))
    if bullet:
        s = s[1:].strip()
    marked = s.startswith("#") or "**" in s or s.startswith("__")
    s = s.lstrip("#").replace("**", "").replace("__", "").strip()
    m = _NUMBERING.match(s)
    numbering = next((kind for kind, value in m.groupdict().items() if value), "") if m else ""
    numbering = "digit" if numbering == "step" else ("bullet" if bullet and not numbering else numbering)
    numbered = bool(numbering)
    s = s[m.end() :].strip() if m else s
    if ":" in s:
        title, rest = (x.strip() for x in s.split(":", 1))
    elif marked or numbered:
        # "## Model training" / "**Data preprocessing**" / "2. Model architecture": the whole line is the title
        title, rest = s.rstrip("."), ""
        if s.endswith(".") or not classify_heading(title):
            return None  # "1. Reads the training data." is a list item, not a heading
    else:
        title, rest = s, ""
        if s.lower() not in {h.lower() for h in CANONICAL_HEADINGS.values()}:
            return None
    keys = classify_heading(title)
    if bullet and (rest or not keys):
        return None  # "- Model: ResNet50" is a bullet point; only "- Model training:" alone on its line heads
    words = title.split()
    if not words or len(words) > (_MAX_HEADING_WORDS if keys else _MAX_OTHER_WORDS) or not title[0].isalpha():
        return None
    return _Heading(title, keys, rest, (numbering, marked), indent)


def parse_instruction(text: str) -> Instruction:
    """Split an instruction into canonical sections; tolerant of numbering, markdown and combined headings."""
    text = text.strip()
    if text.endswith("</s>"):
        text = text[: -len("</s>")].rstrip()
    lines = text.splitlines()
    candidates = {i: h for i, line in enumerate(lines) if (h := _heading(line)) is not None}
    known = [h for h in candidates.values() if h.keys]
    # A heading indented deeper than the mapped ones is a sub-heading inside the current section's body; an
    # unmapped heading ("Visualization:") starts a section only when it looks like the mapped ones (same
    # numbering/markup), so "a. The code reads three files: ..." stays inside "1. Data Preprocessing:".
    styles = {h.style for h in known}
    min_indent = min((h.indent for h in known), default=0)
    starts = {i: h for i, h in candidates.items() if h.indent <= min_indent and (h.keys or h.style in styles)}
    sections: list[Section] = []
    order = sorted(starts)
    for n, i in enumerate(order):
        end = order[n + 1] if n + 1 < len(order) else len(lines)
        h = starts[i]
        body_lines = ([h.rest] if h.rest else []) + lines[i + 1 : end]
        sections.append(Section(h.title, h.keys, "\n".join(body_lines).strip()))
    bodies: dict[str, list[str]] = {key: [] for key in SECTIONS}
    for section in sections:
        for key in section.keys:
            if section.body:
                bodies[key].append(section.body)
    return Instruction(
        text=text,
        sections=tuple(sections),
        **{key: "\n".join(parts) if parts else None for key, parts in bodies.items()},
    )


@dataclass
class ParseReport:
    """How the rows of a corpus source parsed.

    - full: all core sections (preprocessing, architecture, training) found;
    - partial: some core sections found (`reasons` says which are missing);
    - unstructured: readable row, but its instruction is free text without section headings;
    - failed: the row cannot become a training example (no instruction, no rank, ...); listed in `failures`.
    Full, partial and unstructured rows are kept (their instruction text is the training target, and
    `data.filters.require_complete` can drop the incomplete ones); failed rows are logged one by one.
    """

    source: str
    full: int = 0
    partial: int = 0
    unstructured: int = 0
    failed: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.full + self.partial + self.unstructured + self.failed

    def add(self, row_id: str, instruction: Instruction | None, reason: str | None = None) -> None:
        """Count one row: `instruction` None means it failed for `reason`."""
        if instruction is None:
            self.failed += 1
            self.reasons[reason or "unparseable"] += 1
            self.failures.append((row_id, reason or "unparseable"))
        elif instruction.is_complete:
            self.full += 1
        elif len(instruction.missing) == len(CORE_SECTIONS):
            self.unstructured += 1
            self.reasons["no section headings"] += 1
        else:
            self.partial += 1
            self.reasons[f"missing {', '.join(instruction.missing)}"] += 1

    def summary(self) -> str:
        top = "; ".join(f"{reason}: {n}" for reason, n in self.reasons.most_common(6))
        return (
            f"{self.source}: {self.total} rows, {self.full} fully parsed, {self.partial} partially parsed, "
            f"{self.unstructured} without sections, {self.failed} unparseable" + (f" ({top})" if top else "")
        )

    def log(self, logger: logging.Logger) -> None:
        """One summary line, plus one warning per failed row (never silently dropped)."""
        logger.info("%s", self.summary())
        for row_id, reason in self.failures:
            logger.warning("%s: id %s not used: %s", self.source, row_id, reason)

    def as_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "total": self.total,
            "full": self.full,
            "partial": self.partial,
            "unstructured": self.unstructured,
            "failed": self.failed,
            "reasons": dict(self.reasons),
        }
