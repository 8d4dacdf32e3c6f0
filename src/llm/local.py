"""The local client: a Hugging Face base model plus an optional LoRA adapter from a training run.

- `model`: a `conf/model/*.yaml` config, loaded with `src.training.base_models.load_base_model`. When the
  adapter comes from a training run whose saved config names its base model, that one is used instead, so an
  adapter always meets the weights it was trained on.
- `adapter`: a folder in peft `save_pretrained` format, `latest:<experiment>` (the newest
  `<train_outputs_dir>/<experiment>/*/adapter`), or null for the base model. For sampling the adapter is
  merged into the full-precision weights (fastest on CPU); with `quant` set it stays unmerged. The run's
  prompt template is kept as `train_prompt_cfg` (the pipeline renders instructions with it).
- Generation is batched with left padding. Sampling is done by a logits processor with one seeded
  `torch.Generator` per output row (seeded from the request's seed, its text and the choice index), so a
  request's text depends on the request only — not on which other requests share its batch — and the same
  request always gives the same text.
- Chat messages are rendered with the tokenizer's chat template; raw prompt strings are tokenised as-is
  (the instruction stage passes the exact prompt of the training template). A request's `prefix` is
  appended to the rendered text (the answer starts with it); the completion holds only what follows.

Weights load on the first `complete` call, so a replay from the cache never touches them.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

from src.errors import PipesynthError
from src.llm.base import ChatRequest, Choice, Completion, SamplingParams

log = logging.getLogger(__name__)

ADAPTER_FILES = ("adapter_config.json",)
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def _is_adapter(folder: Path) -> bool:
    return (folder / "adapter_config.json").is_file() and any((folder / w).is_file() for w in ADAPTER_WEIGHTS)


def resolve_adapter(spec: str | None, train_outputs_dir: str | Path, required: bool = True) -> Path | None:
    """An adapter folder from `spec`: a path, `latest:<experiment>`, or None (base model).

    `latest:` takes the newest run (timestamp folder name, then mtime) that holds a complete adapter. When
    there is none, `required=False` falls back to the base model with a warning; otherwise it is an error.
    """
    if spec is None or str(spec).strip().lower() in ("", "null", "none", "base"):
        return None
    spec = str(spec)
    if spec.startswith("latest:"):
        name = spec.split(":", 1)[1].strip()
        root = Path(train_outputs_dir) / name
        runs = [p.parent for p in root.glob("*/adapter") if _is_adapter(p)]
        if runs:
            newest = max(runs, key=lambda run: (run.name, run.stat().st_mtime))
            log.info("adapter %s -> %s", spec, newest / "adapter")
            return newest / "adapter"
        problem = f"no trained adapter found for llm.adapter={spec} (looked for {root}/*/adapter)"
        fix = f"train one first: python -m src.train +experiment={name}; or set llm.adapter=null for the base model"
        if required:
            raise PipesynthError(problem, fix)
        log.warning("%s: using the base model. To use an adapter, %s", problem, fix.split("; or")[0])
        return None
    folder = Path(spec).expanduser()
    if folder.is_dir() and not _is_adapter(folder) and _is_adapter(folder / "adapter"):
        folder = folder / "adapter"  # a training run folder was given
    if not _is_adapter(folder):
        raise PipesynthError(
            f"llm.adapter={spec} is not a LoRA adapter folder (needs adapter_config.json and adapter_model.*)",
            "pass a training run's adapter folder (outputs/train/<name>/<time>/adapter), "
            "latest:<experiment>, or null for the base model",
        )
    return folder.resolve()


def adapter_fingerprint(folder: Path) -> str:
    """First 12 hex digits of sha256 over the adapter's config and weights (its identity in the cache key)."""
    digest = hashlib.sha256()
    for name in (*ADAPTER_FILES, *ADAPTER_WEIGHTS):
        path = folder / name
        if path.is_file():
            with path.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:12]


def run_config_node(adapter: Path, key: str) -> DictConfig | None:
    """The `key` node (e.g. `model`, `prompt`) of the saved config of the training run behind `adapter`."""
    run = adapter.parent
    # the trainer's AdapterExport writes the resolved config beside the adapter; Hydra keeps one in .hydra/
    for candidate in (adapter / "pipesynth_config.yaml", run / ".hydra" / "config.yaml", run / "config.yaml"):
        if candidate.is_file():
            cfg = OmegaConf.load(candidate)
            if isinstance(cfg, DictConfig) and cfg.get(key) is not None:
                # resolve against the run's whole config (model files may interpolate ${model.path})
                return OmegaConf.create(OmegaConf.to_container(cfg[key], resolve=True))
    return None


def adapter_and_base(
    adapter: str | None, train_outputs_dir: str | Path, required: bool, model: DictConfig | dict | None
) -> tuple[Path | None, DictConfig | dict, DictConfig | None]:
    """(adapter folder or None, base model config, the adapter's training prompt config) for a client.

    When the adapter's training run names its base model, that one wins, so an adapter always meets the
    weights it was trained on. The prompt config is the template it was trained with (the instruction stage
    must render the same one).
    """
    path = resolve_adapter(adapter, train_outputs_dir, required=required)
    run_cfg = run_config_node(path, "model") if path else None
    prompt_cfg = run_config_node(path, "prompt") if path else None
    if run_cfg is not None:
        if model is not None and run_cfg.get("name") != model.get("name"):
            log.info("the adapter was trained on %s: loading that base model", run_cfg.get("name"))
        model = run_cfg
    if model is None:
        raise PipesynthError(
            "llm.model is not set and the adapter's training run does not name its base model",
            "choose the base model with model@llm.model=<a conf/model name>, e.g. model@llm.model=smollm2_135m",
        )
    return path, model, prompt_cfg


def client_model_id(backend: str, model: DictConfig | dict, adapter: Path | None) -> str:
    """`<backend>:<model name>+base` or `+lora-<fingerprint>`: the weights' identity in the cache key."""
    name = str(model.get("name", "model"))
    return f"{backend}:{name}+" + (f"lora-{adapter_fingerprint(adapter)}" if adapter else "base")


def row_seed(seed: int, text: str, choice: int) -> int:
    """A 63-bit seed for output row `choice` of a request with `seed` and input `text`.

    The input takes part so that different prompts with the same seed (ranks 1..3 of one task) draw
    independent streams instead of near-identical samples.
    """
    digest = hashlib.sha256(f"{seed}:{choice}:{text}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class SeededSampler(LogitsProcessor):
    """Temperature + top-p sampling with one generator per row; returns logits that only allow the pick.

    `generate` runs greedy decoding on top, so it takes exactly the token sampled here. Temperature 0 is
    greedy decoding.
    """

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float) -> None:
        self.generators = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]
        self.temperature = temperature
        self.top_p = top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        logits = scores.float()
        if self.temperature == 0:
            picks = logits.argmax(dim=-1)
        else:
            probs = torch.softmax(logits / self.temperature, dim=-1)
            if self.top_p < 1.0:
                sorted_probs, order = probs.sort(dim=-1, descending=True)
                # drop a token when the mass before it already reaches top_p (the top token always stays)
                drop = (sorted_probs.cumsum(dim=-1) - sorted_probs) >= self.top_p
                sorted_probs = sorted_probs.masked_fill(drop, 0.0)
                probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
            probs = probs.cpu()
            picks = torch.stack(
                [torch.multinomial(probs[i], 1, generator=g)[0] for i, g in enumerate(self.generators)]
            ).to(scores.device)
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(1, picks.unsqueeze(1), 0.0)
        return out


class LocalClient:
    """A local Hugging Face model (+ LoRA adapter). See the module docstring for the options."""

    def __init__(
        self,
        model: DictConfig | dict | None = None,
        adapter: str | None = None,
        adapter_required: bool = True,
        train_outputs_dir: str | Path = "outputs/train",
        cache_dir: str | Path = ".cache",
        quant: DictConfig | dict | None = None,
        merge_adapter: bool = True,
        device: str = "auto",
        dtype: str | None = None,
        batch_size: int = 8,
        add_special_tokens: bool = True,
        temperature: float = 0.7,
        max_tokens: int = 512,
        top_p: float = 1.0,
        seed: int | None = 0,
        stop: Sequence[str] | None = None,
    ) -> None:
        self.adapter_path, model, self.train_prompt_cfg = adapter_and_base(
            adapter, train_outputs_dir, adapter_required, model
        )
        self.model_cfg = model
        self.quant_cfg = quant if quant is not None and quant.get("bnb") is not None else None
        self.merge_adapter = merge_adapter and self.quant_cfg is None  # no exact merge into 4-bit weights
        self.cache_dir = Path(cache_dir)
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.dtype = dtype
        self.batch_size = max(1, int(batch_size))
        self.add_special_tokens = add_special_tokens
        self.defaults = SamplingParams(
            temperature=temperature,
            max_tokens=max_tokens,
            top_p=top_p,
            n=1,
            seed=seed,
            stop=tuple(stop or ()),
        )
        self.model_id = client_model_id("local", model, self.adapter_path)
        self.model: Any = None
        self.tokenizer: Any = None

    @classmethod
    def from_pretrained(
        cls,
        model: Any,
        tokenizer: Any,
        adapter: str | Path | None = None,
        name: str = "custom",
        **kwargs: Any,
    ) -> LocalClient:
        """A client around an already loaded (model, tokenizer), e.g. in tests or notebooks."""
        client = cls(model={"name": name}, adapter=str(adapter) if adapter else None, **kwargs)
        client._setup(model, tokenizer)
        return client

    # ------------------------------------------------------------------ loading
    def load(self) -> None:
        """Load the weights (once; thread-safe)."""
        if self.model is not None:
            return
        from src.config import MODEL_LOAD_LOCK
        from src.training.base_models import load_base_model

        with MODEL_LOAD_LOCK:
            if self.model is not None:  # another thread loaded it while this one waited
                return
            start = time.perf_counter()
            device_map = {"": self.device} if self.quant_cfg is not None and self.device != "cpu" else None
            model, tokenizer = load_base_model(
                self.model_cfg, self.quant_cfg, cache_dir=self.cache_dir, device_map=device_map
            )
            self._setup(model, tokenizer)
        log.info("loaded %s on %s in %.1fs", self.model_id, self.device, time.perf_counter() - start)

    def _setup(self, model: Any, tokenizer: Any) -> None:
        if self.adapter_path is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(self.adapter_path))
            if self.merge_adapter:
                model = model.merge_and_unload()
        if self.dtype:
            model = model.to(getattr(torch, self.dtype))
        if not getattr(model, "is_loaded_in_4bit", False):
            model = model.to(self.device)
        model.eval()
        model.config.use_cache = True  # training turns the KV cache off; generation needs it
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"  # decoder-only batches: new tokens must follow every prompt directly
        self.model, self.tokenizer = model, tokenizer

    # --------------------------------------------------------------- rendering
    def render(self, request: ChatRequest) -> str:
        """The exact text the model sees for a request: the prompt (or rendered chat) plus the answer prefix."""
        return self._render_prompt(request) + (request.prefix or "")

    def _render_prompt(self, request: ChatRequest) -> str:
        if request.prompt is not None:
            return request.prompt
        messages = [dict(m) for m in request.messages or ()]
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        log.warning("tokenizer has no chat template: rendering messages as 'role: content' lines")
        return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: "

    def _encode(self, request: ChatRequest, max_new: int) -> list[int]:
        # a chat template already writes the special tokens (BOS etc.) as text
        special = self.add_special_tokens if request.prompt is not None else False
        ids = self.tokenizer(self.render(request), add_special_tokens=special)["input_ids"]
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit and len(ids) + max_new > limit:
            keep = max(1, limit - max_new)
            log.warning(
                "%s is %d tokens; the model takes %d with %d new: keeping the last %d",
                request.describe(60),
                len(ids),
                limit,
                max_new,
                keep,
            )
            ids = ids[-keep:]
        return ids

    # -------------------------------------------------------------- generation
    def complete(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        self.load()
        resolved = [r.resolved(self.defaults) for r in requests]
        results: list[Completion | None] = [None] * len(resolved)
        # one generate() per distinct (temperature, top_p, max_tokens, stop); seeds vary per row
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(resolved):
            groups.setdefault((r.temperature, r.top_p, r.max_tokens, r.stop), []).append(i)
        for (temperature, top_p, max_tokens, stop), members in groups.items():
            rows = [(i, j) for i in members for j in range(resolved[i].n or 1)]
            encoded = {i: self._encode(resolved[i], max_tokens) for i in members}
            texts: dict[tuple[int, int], tuple[str, str, int]] = {}
            start = time.perf_counter()
            for b in range(0, len(rows), self.batch_size):
                chunk = rows[b : b + self.batch_size]
                outs = self._generate(
                    [encoded[i] for i, _ in chunk],
                    [self._seed(resolved[i], j) for i, j in chunk],
                    temperature,
                    top_p,
                    max_tokens,
                    stop,  # type: ignore[arg-type]
                )
                texts.update(zip(chunk, outs, strict=True))
            per_request = (time.perf_counter() - start) / len(members)
            for i in members:
                choices = [texts[(i, j)] for j in range(resolved[i].n or 1)]
                results[i] = Completion(
                    choices=[Choice(text=t, finish_reason=f) for t, f, _ in choices],
                    model=self.model_id,
                    prompt_tokens=len(encoded[i]),
                    completion_tokens=sum(n for _, _, n in choices),
                    latency_s=per_request,
                )
        return [c for c in results if c is not None]

    def _seed(self, request: ChatRequest, choice: int) -> int:
        if request.seed is None:  # explicitly unseeded: fresh randomness
            return int(torch.randint(0, 2**62, (1,)).item())
        return row_seed(request.seed, self.render(request), choice)

    @torch.inference_mode()
    def _generate(
        self,
        prompts: list[list[int]],
        seeds: list[int],
        temperature: float,
        top_p: float,
        max_tokens: int,
        stop: tuple[str, ...],
    ) -> list[tuple[str, str, int]]:
        """Generate one continuation per prompt: (text, finish_reason, completion tokens)."""
        tok = self.tokenizer
        batch = tok.pad({"input_ids": prompts}, padding=True, return_tensors="pt").to(self.model.device)
        eos = self.model.generation_config.eos_token_id or tok.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos]) | {tok.eos_token_id}
        gen_cfg = GenerationConfig(
            max_new_tokens=max_tokens,
            do_sample=False,  # SeededSampler has already sampled: greedy takes its pick
            num_beams=1,
            eos_token_id=sorted(i for i in eos_ids if i is not None),
            pad_token_id=tok.pad_token_id,
            stop_strings=list(stop) or None,
        )
        out = self.model.generate(
            **batch,
            generation_config=gen_cfg,
            logits_processor=LogitsProcessorList([SeededSampler(seeds, temperature, top_p)]),
            tokenizer=tok if stop else None,
        )
        new = out[:, batch["input_ids"].shape[1] :].tolist()
        results = []
        for ids in new:
            finish = "length"
            for k, t in enumerate(ids):
                if t in eos_ids:
                    ids, finish = ids[: k + 1], "stop"
                    break
            text = tok.decode(ids, skip_special_tokens=True)
            for s in stop:
                if s in text:
                    text, finish = text.split(s, 1)[0], "stop"
            results.append((text, finish, len(ids)))
        return results
