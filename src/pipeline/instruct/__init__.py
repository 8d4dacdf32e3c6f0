"""Stage 1, instruct: Ranked instructions: the fine-tuned model's top-k solution instructions for a task (the paper's Figure 5).

For ranks 1..k the prompt is rendered by the SAME template object that rendered the training pairs
(`conf/prompt/<name>.yaml`, Figure 4 by default): the task's description, its data type in the corpus
spelling (`to_corpus_data_type`) and its metric as the corpus category (`conf/metric_categories/`). All k
prompts go to the model in one batched call (temperature 0.7 from config). Each answer is parsed into sections;
an answer that lacks a core section (preprocessing, architecture, training) is resampled with a new seed, all
malformed ranks again in one batch, at most `max_resample` times, and only while another round (estimated to
take as long as the last one) would end within `resample_budget_s` seconds (a slow CPU model would double its
latency for each round). Every attempt is a journal node. When every
attempt of a rank fails, the most complete attempt is kept and marked `fallback` — the coders cope with
garbage (the compiler falls back to the data type's default plan).

Sampling (`sampling`): `free` lets the model write the whole answer (the paper; an ablation now). `guided`
(format by construction) writes each core heading itself ("Data preprocessing:", ... from `sections`, data in
conf/prompt/sections/) and lets the model fill that section until the next heading, the end of text or the
section's token budget: one batched call per section for all pending ranks, the request's `prefix` holding
everything written so far. A section's body is cut where the model starts another heading, so every sample
has all core sections unless the model writes nothing at all into one.

Retrieval (`retrieval`, via a `Retriever`, see `CorpusRetriever`): `none`; `context` puts the top instructions
of several nearest corpus competitions (task names stripped) before the request as examples (the text around
them is data: conf/prompt/context/), with stop strings at a new example; `candidates` adds the nearest
competitions' rank-1 instructions after the k model ranks as extra options (journal `meta.source=retrieved`).
Who decides the model family (`decide`): `model`, or `vote` — the neighbours' and the corpus majority's vote
picks the family and the guided sampler writes "Model architecture: <family phrase>" itself, the model writing
the rest around it. Every choice and every excluded competition goes into `journal.meta["instruction_stage"]`.

Descriptions are turned into plain text (`plain_description`: no markdown, no emoji), like the corpus's. The
description is the only part of the prompt that may be shortened, as in training: to `max_prompt_tokens`
with the model's tokenizer when the client has one (local models), else to `max_description_chars`.

Takes the public task facts and description; returns k `Candidate`s (ranked instructions, each a journal node).
Config groups: conf/generate.yaml `instruct:` (k, temperature, sampling, resampling), conf/prompt/, conf/retrieval/,
conf/decide/. Modules: generator (InstructionGenerator), sampling (guided headings), retrieve (corpus neighbours,
family vote), text (candidates and their sections).
"""

from src.pipeline.instruct.generator import InstructionGenerator, inner_client, tokenizer_of
from src.pipeline.instruct.retrieve import CorpusRetriever, Guidance, build_retriever, context_format
from src.pipeline.instruct.sampling import guided_sections, section_body
from src.pipeline.instruct.text import (
    Candidate,
    cut_words,
    plain_description,
    sections_of,
    task_prompt_fields,
    well_formed,
)

__all__ = [
    "Candidate",
    "CorpusRetriever",
    "Guidance",
    "InstructionGenerator",
    "build_retriever",
    "context_format",
    "cut_words",
    "guided_sections",
    "inner_client",
    "plain_description",
    "section_body",
    "sections_of",
    "task_prompt_fields",
    "tokenizer_of",
    "well_formed",
]
