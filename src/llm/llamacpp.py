"""The llama.cpp client: the model's GGUF run by llama-cpp-python (about 4x transformers on 2 CPU cores).

Same protocol and request semantics as `src.llm.local.LocalClient`, so the backend is a config choice
(`llm=llamacpp` instead of `llm=local`):

- `model`: a `conf/model/*.yaml` config whose source has a GGUF (`GGUFPackageSource`,
  `SplitGGUFPackageSource`); the quantised file is run as is, no conversion to safetensors.
- `adapter`: as for the local client (a folder, `latest:<experiment>`, null). A peft LoRA adapter is converted
  once, with llama.cpp's own `convert_lora_to_gguf.py` (from the llama-cpp-python sdist kept at set-up), into a
  llama.cpp LoRA GGUF cached under `<cache_dir>/models/`, and applied over the quantised base at load time.
  The adapter was trained over the fp32 dequantisation of this same GGUF, so base and adapter match.
- Rendering: a raw prompt is tokenised as is (BOS per `add_special_tokens` and the GGUF's own add-BOS flag);
  chat messages go through the GGUF's chat template (`tokenizer.chat_template`) with the generation prompt.
  `prefix` is appended to the rendered text and the completion holds only what follows (interface A).
- Sampling: temperature + top-p only (llama.cpp's top-k, min-p and repeat penalty are switched off by default,
  as in the transformers client). Each output row is seeded from the request's seed, its rendered text and
  the choice index, so a request's text depends on the request only. Requests run one after another (the
  KV cache of a shared prompt prefix is reused between them).

Weights load on the first `complete` call, so a replay from the cache never touches them.
"""

from __future__ import annotations

import atexit
import logging
import os
import random
import subprocess
import sys
import tarfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from filelock import FileLock
from omegaconf import DictConfig

from src.errors import PipesynthError
from src.llm.base import ChatRequest, Choice, Completion, SamplingParams

log = logging.getLogger(__name__)

_INSTALL_FIX = (
    "install llama-cpp-python: PIPESYNTH_LLAMACPP=1 scripts/setup.sh (builds it once, ~6-12 min, and caches "
    "the wheel), or use llm=local (transformers)"
)


def import_llama_cpp() -> Any:
    """The `llama_cpp` module, or one clear error saying how to get it."""
    try:
        import llama_cpp
    except ImportError as exc:
        raise PipesynthError(f"llm=llamacpp needs the llama_cpp package ({exc})", _INSTALL_FIX) from None
    return llama_cpp


def _llama_cpp_sources(sdist: str | Path | None, cache_dir: Path) -> Path:
    """llama.cpp's conversion scripts (vendor/llama.cpp of the llama-cpp-python sdist), extracted once."""
    target = cache_dir / "llama.cpp-convert"
    if (target / "convert_lora_to_gguf.py").is_file():
        return target
    path = Path(str(sdist)).expanduser() if sdist else None
    if path is None or not path.is_file():
        raise PipesynthError(
            f"converting a LoRA adapter for llama.cpp needs the llama-cpp-python sdist (llm.llamacpp_sdist={sdist})",
            "run scripts/setup.sh with PIPESYNTH_LLAMACPP=1 (it keeps the sdist beside the wheel), or set "
            "llm.llamacpp_sdist=/path/to/llama_cpp_python-0.3.36.tar.gz, or merge the adapter and use llm=local",
        )
    keep = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "conversion/", "gguf-py/")
    with FileLock(str(target) + ".lock"):
        if not (target / "convert_lora_to_gguf.py").is_file():
            tmp = target.with_name(target.name + f".{os.getpid()}.tmp")
            with tarfile.open(path) as tar:
                members = []
                for member in tar.getmembers():
                    parts = member.name.split("/vendor/llama.cpp/", 1)
                    if len(parts) == 2 and parts[1].startswith(keep) and (member.isfile() or member.isdir()):
                        member.name = parts[1]
                        members.append(member)
                tar.extractall(tmp, members=members, filter="data")
            tmp.rename(target)
    return target


def lora_to_gguf(adapter: Path, base_folder: Path, out: Path, sources: Path) -> Path:
    """Convert a peft LoRA adapter to a llama.cpp LoRA GGUF (f32) with llama.cpp's own script, once."""
    if out.is_file():
        return out
    with FileLock(str(out) + ".lock"):
        if out.is_file():
            return out
        tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
        env = {
            **os.environ,
            "PYTHONPATH": str(sources / "gguf-py"),
        }  # the script's own gguf-py, in step with it
        cmd = [sys.executable, str(sources / "convert_lora_to_gguf.py"), "--base", str(base_folder)]
        cmd += ["--outtype", "f32", "--outfile", str(tmp), str(adapter)]
        log.info("converting LoRA adapter %s to a llama.cpp GGUF (once)", adapter)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0 or not tmp.is_file():
            tmp.unlink(missing_ok=True)
            tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
            raise PipesynthError(
                f"llama.cpp could not convert the LoRA adapter {adapter}: {tail}",
                "use llm=local for this adapter (transformers applies any peft adapter)",
            )
        tmp.rename(out)
    return out


class LlamaCppClient:
    """A GGUF model (+ LoRA adapter) run by llama.cpp. See the module docstring for the options."""

    def __init__(
        self,
        model: DictConfig | dict | None = None,
        adapter: str | None = None,
        adapter_required: bool = True,
        train_outputs_dir: str | Path = "outputs/train",
        cache_dir: str | Path = ".cache",
        llamacpp_sdist: str | None = None,
        n_ctx: int = 4096,
        n_batch: int = 512,
        threads: int | str | None = "auto",
        add_special_tokens: bool = True,
        top_k: int = 0,
        min_p: float = 0.0,
        repeat_penalty: float = 1.0,
        temperature: float = 0.7,
        max_tokens: int = 512,
        top_p: float = 1.0,
        seed: int | None = 0,
        stop: Sequence[str] | None = None,
    ) -> None:
        from src.llm.local import adapter_and_base, client_model_id

        self.adapter_path, model, self.train_prompt_cfg = adapter_and_base(
            adapter, train_outputs_dir, adapter_required, model
        )
        self.model_cfg = model
        self.cache_dir = Path(cache_dir)
        self.llamacpp_sdist = llamacpp_sdist
        self.n_ctx, self.n_batch, self.threads = int(n_ctx), int(n_batch), threads
        self.add_special_tokens = add_special_tokens
        self.top_k, self.min_p, self.repeat_penalty = int(top_k), float(min_p), float(repeat_penalty)
        self.defaults = SamplingParams(
            temperature=temperature,
            max_tokens=max_tokens,
            top_p=top_p,
            n=1,
            seed=seed,
            stop=tuple(stop or ()),
        )
        self.model_id = client_model_id("llamacpp", model, self.adapter_path)
        self.llm: Any = None
        self.formatter: Any = None
        self.load_s: float | None = None

    # ------------------------------------------------------------------ loading
    def gguf_files(self) -> tuple[Path, Path | None]:
        """(base GGUF, LoRA GGUF or None): assembled/converted on first use."""
        from src.training.base_models import model_source

        source = model_source(self.model_cfg)
        if not hasattr(source, "gguf"):
            raise PipesynthError(
                f"llm=llamacpp runs GGUF files, and model {self.model_cfg.get('name')} "
                f"({type(source).__name__}) has none",
                "choose a GGUF model (model@llm.model=qwen25_coder_05b or smollm2_135m), or use llm=local",
            )
        base = source.gguf(self.cache_dir)
        if self.adapter_path is None:
            return base, None
        from src.llm.local import adapter_fingerprint

        sources = _llama_cpp_sources(self.llamacpp_sdist, self.cache_dir)
        out = base.parent / f"{base.stem}.lora-{adapter_fingerprint(self.adapter_path)}.gguf"
        return base, lora_to_gguf(self.adapter_path, source.materialize(self.cache_dir), out, sources)

    def load(self) -> None:
        """Load the GGUF (and LoRA) once; a fraction of a second for a 0.5B model."""
        if self.llm is not None:
            return
        llama_cpp = import_llama_cpp()

        from src.config import resolve_threads

        base, lora = self.gguf_files()
        threads = resolve_threads(self.threads) or os.cpu_count() or 1
        start = time.perf_counter()
        llm = llama_cpp.Llama(
            model_path=str(base),
            lora_path=str(lora) if lora else None,
            n_ctx=self.n_ctx,
            n_batch=self.n_batch,
            n_threads=threads,
            n_threads_batch=threads,
            seed=0,
            verbose=False,
        )
        self.load_s = time.perf_counter() - start
        # free the model before interpreter teardown: llama-cpp-python's __del__ fails once ctypes is gone
        atexit.register(llm.close)
        self._setup(llm)
        log.info("loaded %s (%s) with %d threads in %.1fs", self.model_id, base.name, threads, self.load_s)

    @classmethod
    def from_llama(cls, llm: Any, name: str = "custom", **kwargs: Any) -> LlamaCppClient:
        """A client around an already loaded `llama_cpp.Llama` (tests, notebooks)."""
        client = cls(model={"name": name}, **kwargs)
        client._setup(llm)
        return client

    def _setup(self, llm: Any) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = llm.metadata.get("tokenizer.chat_template")
        if template:

            def token_text(token: int) -> str:
                return llm.detokenize([token], special=True).decode("utf-8", "replace") if token >= 0 else ""

            self.formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=token_text(llm.token_eos()),
                bos_token=token_text(llm.token_bos()),
                add_generation_prompt=True,
            )
        self.llm = llm

    # --------------------------------------------------------------- rendering
    def render(self, request: ChatRequest) -> str:
        """The exact text the model sees for a request: the prompt (or rendered chat) plus the answer prefix."""
        self.load()
        return self._render_prompt(request) + (request.prefix or "")

    def _render_prompt(self, request: ChatRequest) -> str:
        if request.prompt is not None:
            return request.prompt
        messages = [dict(m) for m in request.messages or ()]
        if self.formatter is not None:
            return self.formatter(messages=messages).prompt
        log.warning("the GGUF has no chat template: rendering messages as 'role: content' lines")
        return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: "

    def _encode(self, request: ChatRequest, text: str, max_new: int) -> list[int]:
        # a chat template already writes the special tokens (BOS etc.) as text
        special = self.add_special_tokens if request.prompt is not None else False
        ids = self.llm.tokenize(text.encode("utf-8"), add_bos=special, special=True)
        if len(ids) + max_new > self.n_ctx:
            keep = max(1, self.n_ctx - max_new)
            log.warning(
                "%s is %d tokens; llm.n_ctx=%d with %d new: keeping the last %d",
                request.describe(60),
                len(ids),
                self.n_ctx,
                max_new,
                keep,
            )
            ids = ids[-keep:]
        return ids

    # -------------------------------------------------------------- generation
    def complete(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        from src.llm.local import row_seed

        self.load()
        results = []
        for request in requests:
            r = request.resolved(self.defaults)
            max_new = min(int(r.max_tokens or 1), self.n_ctx - 1)
            text = self.render(r)
            ids = self._encode(r, text, max_new)
            start = time.perf_counter()
            choices, used = [], 0
            for j in range(r.n or 1):
                seed = row_seed(r.seed, text, j) if r.seed is not None else random.getrandbits(63)
                out = self.llm.create_completion(
                    prompt=ids,
                    max_tokens=max_new,
                    temperature=r.temperature,
                    top_p=r.top_p,
                    top_k=self.top_k,
                    min_p=self.min_p,
                    repeat_penalty=self.repeat_penalty,
                    stop=list(r.stop or ()) or None,
                    seed=seed % 2**32,  # llama.cpp seeds are 32-bit
                )
                choice = out["choices"][0]
                finish = "length" if choice.get("finish_reason") == "length" else "stop"
                choices.append(Choice(text=choice["text"], finish_reason=finish))
                used += int(out["usage"]["completion_tokens"])
            results.append(
                Completion(
                    choices=choices,
                    model=self.model_id,
                    prompt_tokens=len(ids),
                    completion_tokens=used,
                    latency_s=time.perf_counter() - start,
                )
            )
        return results
