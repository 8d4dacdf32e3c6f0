"""The instruction-quality benchmark end to end on the tiny random model (two corpus competitions, one dev task):
it prints the variants' table and its two closing figures, and a rerun is answered from the LLM cache."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from src.config import REPO_ROOT


def _run(cache: Path) -> str:
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "benchmarks" / "instruction_quality.py"),
            "--limit=2",
            "--dev-limit=1",
            "--k=1",
            "--variants=majority,retrieval_only,zero_shot,vote",
            "--embedder=src.corpus.retrieval.TfidfEmbedder",
            "model@llm.model=tiny_llama",
            "llm.adapter=null",
            "llm.device=cpu",
            f"llm.cache.dir={cache}",
            "k=2",
            "threads=1",
            *(f"sections.headings.{s}.max_tokens=6" for s in ("preprocessing", "architecture", "training")),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_benchmark_runs_on_the_tiny_model_and_reruns_from_the_cache(tmp_path: Path) -> None:
    out = _run(tmp_path / "llm-cache")
    lines = out.strip().splitlines()
    assert lines[-2].startswith("family_agreement_vs_majority=") and lines[-1].startswith("well_formed_rate=")
    assert float(lines[-1].split("=")[1]) == 1.0  # guided sampling: well formed even from random weights
    table = {
        line.split()[0]: line
        for line in lines
        if line.split() and line.split()[0] in ("majority", "retrieval_only", "zero_shot", "vote", "default")
    }
    assert set(table) == {"majority", "retrieval_only", "zero_shot", "vote", "default"}
    assert "corpus competitions: n=2 (leave-one-out" in out and "dev tasks: n=1" in out
    assert "/2=" in table["majority"]  # agreement over the two held-out competitions, with its interval
    # vote: the sampler wrote the voted family, so the compiler's parse names a model on every item
    assert "model named 3/3" in out.split("\nvote ", 1)[1].split("\n", 2)[1]
    again = _run(tmp_path / "llm-cache")
    assert "(cached)" in again and again.splitlines()[-2:] == lines[-2:]
