"""The local client: a tiny random Llama (+ a peft LoRA adapter) through load_base_model; SmolLM2 when slow."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from src.errors import PipesynthError
from src.llm import CachedClient, ChatRequest, build_client, user
from src.llm.local import LocalClient, SeededSampler, resolve_adapter
from src.training.base_models import load_base_model

REPO = Path(__file__).resolve().parent.parent
# converted base models are shared with the training tests (the SmolLM2 conversion takes ~30 s once)
MODELS_CACHE = Path(os.environ.get("PIPESYNTH_CACHE", REPO / ".cache"))
TINY = OmegaConf.load(REPO / "conf" / "model" / "tiny_llama.yaml")


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter for the tiny Llama with non-zero B matrices (peft's default init is a no-op)."""
    from peft import LoraConfig, get_peft_model

    model, tokenizer = load_base_model(TINY, None, cache_dir=MODELS_CACHE)
    torch.manual_seed(1)
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    out = tmp_path_factory.mktemp("run") / "adapter"
    get_peft_model(model, lora).save_pretrained(str(out))
    return out


def _local(tmp_path: Path, *overrides: str) -> CachedClient:
    primary = tmp_path / "conf"
    primary.mkdir(exist_ok=True)
    (primary / "llm_test.yaml").write_text(
        "defaults:\n  - _self_\n  - paths: default\n  - llm: local\n"
        f"hydra:\n  searchpath:\n    - file://{REPO / 'conf'}\n"
    )
    with initialize_config_dir(str(primary), version_base="1.3"):
        cfg = compose(
            "llm_test",
            overrides=[
                f"paths.cache_dir={MODELS_CACHE}",
                "paths.output_dir=unused",
                f"paths.root_dir={tmp_path}",
                "model@llm.model=tiny_llama",
                f"llm.cache.dir={tmp_path / 'llm-cache'}",
                "llm.cache.mode=off",
                "llm.device=cpu",
                *overrides,
            ],
        )
    return build_client(cfg.llm)


def _count_generate_calls(client: LocalClient, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    client.load()
    calls: list[int] = []
    original = client.model.generate

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["input_ids"].shape[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(client.model, "generate", spy)
    return calls


def test_batched_generation_of_the_requested_sequences(
    tmp_path: Path, adapter_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    llm = _local(tmp_path, f"llm.adapter={adapter_dir}", "llm.max_tokens=12")
    calls = _count_generate_calls(llm.client, monkeypatch)
    requests = [ChatRequest(prompt=f"[INST] rank {r} [/INST]", tag="instruct") for r in (1, 2, 3)]
    requests.append(ChatRequest(messages=user("Write code"), n=2))
    out = llm.complete(requests)
    assert calls == [5]  # 3 prompts + 2 samples of the chat request, one generate() call
    assert [len(c.choices) for c in out] == [1, 1, 1, 2]
    for c in out:
        assert c.model.startswith("local:tiny_llama+lora-") and not c.cached
        assert 1 <= c.completion_tokens <= 12 * len(c.choices)
        assert all(ch.finish_reason in ("stop", "length") for ch in c.choices)
    # a random model rarely emits EOS: 12 tokens, cut by max_tokens
    assert out[0].finish_reason == "length" and out[0].completion_tokens == 12
    assert out[0].prompt_tokens == len(llm.client.tokenizer("[INST] rank 1 [/INST]")["input_ids"])
    assert llm.usage.calls == 4 and llm.usage.cost_usd == 0


def test_sampling_is_seeded_per_request_not_per_batch(tmp_path: Path) -> None:
    llm = _local(tmp_path, "llm.adapter=null", "llm.max_tokens=16", "llm.temperature=1.0")
    prompt = "[INST] Get the main information about data preprocessing. [/INST]"
    first = llm.complete([ChatRequest(prompt=prompt, seed=5)])[0].text
    again = llm.complete([ChatRequest(prompt=prompt, seed=5)])[0].text
    other = llm.complete([ChatRequest(prompt=prompt, seed=6)])[0].text
    assert first == again and first != other
    # the same request inside a batch of longer prompts (left padding) gives the same text
    batch = llm.complete(
        [ChatRequest(prompt="a much longer prompt " * 6, seed=1), ChatRequest(prompt=prompt, seed=5)]
    )
    assert batch[1].text == first
    # a stop string cuts the same sample where it first appears (and stops generating there)
    stopped = llm.complete([ChatRequest(prompt=prompt, seed=5, stop=["e"])])[0]
    assert "e" in first and stopped.text == first.split("e", 1)[0] and stopped.finish_reason == "stop"
    assert stopped.completion_tokens < 16
    # n samples of one request are different streams
    assert len(set(llm.complete([ChatRequest(prompt=prompt, seed=5, n=3)])[0].texts)) == 3


def test_temperature_zero_is_greedy_decoding(tmp_path: Path) -> None:
    llm = _local(tmp_path, "llm.adapter=null", "llm.max_tokens=10")
    client: LocalClient = llm.client
    ours = llm.complete([ChatRequest(prompt="def train(model):", temperature=0.0)])[0]
    client.load()
    ids = client.tokenizer("def train(model):", return_tensors="pt")
    ref = client.model.generate(
        **ids, do_sample=False, max_new_tokens=10, pad_token_id=client.tokenizer.pad_token_id
    )
    assert ours.text == client.tokenizer.decode(ref[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)


def test_seeded_sampler_respects_top_p() -> None:
    scores = torch.log(torch.tensor([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2]]))
    picks: dict[float, set[int]] = {}
    for top_p in (0.4, 0.7, 1.0):
        sampler = SeededSampler([1, 2], temperature=1.0, top_p=top_p)
        seen = set()
        for _ in range(200):
            out = sampler(torch.zeros(2, 1, dtype=torch.long), scores.clone())
            assert (out == 0).sum(dim=1).tolist() == [1, 1]  # exactly one allowed token per row
            seen |= set(out.argmax(dim=1).tolist())
        picks[top_p] = seen
    assert picks == {0.4: {0}, 0.7: {0, 1}, 1.0: {0, 1, 2}}


def test_adapter_changes_logits_and_is_merged(tmp_path: Path, adapter_dir: Path) -> None:
    base = _local(tmp_path, "llm.adapter=null").client
    tuned = _local(tmp_path, f"llm.adapter={adapter_dir}").client
    assert base.model_id == "local:tiny_llama+base" and tuned.model_id.startswith("local:tiny_llama+lora-")
    base.load()
    tuned.load()
    assert not any("lora" in name for name, _ in tuned.model.named_modules())  # merged into plain Linear
    ids = base.tokenizer("hello world", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        diff = (tuned.model(ids).logits - base.model(ids).logits).abs().max().item()
    assert diff > 1e-3
    # the same adapter applied unmerged gives the same logits as the merged weights
    from peft import PeftModel

    fresh, _ = load_base_model(TINY, None, cache_dir=MODELS_CACHE)
    unmerged = PeftModel.from_pretrained(fresh, str(adapter_dir)).eval()
    with torch.no_grad():
        assert torch.allclose(unmerged(ids).logits, tuned.model(ids).logits, atol=1e-4)


def test_chat_messages_use_the_chat_template_and_prompts_pass_as_is(tmp_path: Path) -> None:
    client: LocalClient = _local(tmp_path, "llm.adapter=null").client
    client.load()
    msgs = user("Fix this code", system="You are a careful engineer.")
    rendered = client.render(ChatRequest(messages=msgs))
    assert rendered == client.tokenizer.apply_chat_template(
        list(msgs), add_generation_prompt=True, tokenize=False
    )
    assert rendered.startswith("<|im_start|>system\nYou are a careful engineer.") and rendered.endswith(
        "assistant\n"
    )
    assert client.render(ChatRequest(prompt="[INST] raw [/INST]")) == "[INST] raw [/INST]"
    # an answer prefix follows the rendered prompt; the completion holds only the continuation
    assert client.render(ChatRequest(messages=msgs, prefix="Data preprocessing:")) == (
        rendered + "Data preprocessing:"
    )
    [c] = client.complete([ChatRequest(messages=msgs, prefix="Data preprocessing:", max_tokens=5)])
    full = client.tokenizer(rendered + "Data preprocessing:", add_special_tokens=False)["input_ids"]
    assert c.prompt_tokens == len(full) and not c.text.startswith("Data preprocessing:")


def test_latest_adapter_resolution(tmp_path: Path, adapter_dir: Path) -> None:
    import shutil

    root = tmp_path / "outputs" / "train"
    old = root / "qlora_tiny" / "2025-01-01_10-00-00" / "adapter"
    new = root / "qlora_tiny" / "2025-01-02_09-00-00" / "adapter"
    broken = root / "qlora_tiny" / "2025-01-03_09-00-00" / "adapter"  # a killed run: no weights
    for d in (old, new):
        shutil.copytree(adapter_dir, d)
    broken.mkdir(parents=True)
    (broken / "adapter_config.json").write_text("{}")
    assert resolve_adapter("latest:qlora_tiny", root) == new
    assert resolve_adapter(str(new.parent), root) == new.resolve()  # a run folder works too
    assert resolve_adapter(None, root) is None and resolve_adapter("null", root) is None
    assert resolve_adapter("latest:never_trained", root, required=False) is None
    with pytest.raises(PipesynthError, match=r"python -m src.train \+experiment=never_trained"):
        resolve_adapter("latest:never_trained", root)
    with pytest.raises(PipesynthError, match="not a LoRA adapter folder"):
        resolve_adapter(str(broken), root)
    # through the config: llm.adapter=latest:<name> under paths.root_dir/outputs/train
    llm = _local(tmp_path, "llm.adapter=latest:qlora_tiny")
    assert llm.client.adapter_path == new


def test_the_adapter_runs_own_base_model_wins(tmp_path: Path, adapter_dir: Path) -> None:
    import shutil

    adapter = tmp_path / "run" / "adapter"
    shutil.copytree(adapter_dir, adapter)
    OmegaConf.save(OmegaConf.create({"model": TINY, "name": "qlora_tiny"}), adapter / "pipesynth_config.yaml")
    llm = _local(tmp_path, f"llm.adapter={adapter}", "model@llm.model=smollm2_135m")
    assert llm.client.model_cfg["name"] == "tiny_llama"  # not the configured SmolLM2
    assert llm.client.model is None  # nothing loaded before the first request


def test_replay_needs_no_weights(tmp_path: Path, adapter_dir: Path) -> None:
    live = _local(tmp_path, f"llm.adapter={adapter_dir}", "llm.cache.mode=read_write", "llm.max_tokens=8")
    text = live.complete([ChatRequest(prompt="[INST] x [/INST]")])[0].text
    replay = _local(tmp_path, f"llm.adapter={adapter_dir}", "llm.cache.mode=replay", "llm.max_tokens=8")
    hit = replay.complete([ChatRequest(prompt="[INST] x [/INST]")])[0]
    assert hit.cached and hit.text == text
    assert replay.client.model is None  # answered without loading the model
    with pytest.raises(PipesynthError, match="replay mode"):
        replay.complete([ChatRequest(prompt="[INST] x [/INST]", seed=1)])


@pytest.mark.slow
def test_smollm2_generates_three_instructions(tmp_path: Path) -> None:
    llm = _local(tmp_path, "model@llm.model=smollm2_135m", "llm.adapter=null", "llm.max_tokens=64")
    template = (
        "[INST] Get the main information about data preprocessing, model architecture and model training for "
        "this problem. This solution has the {rank} place in rating. Data type: tabular data. Metric type is: "
        "accuracy. Problem: predict which passengers survived the Titanic shipwreck. [/INST]"
    )
    start = time.perf_counter()
    out = llm.complete([ChatRequest(prompt=template.format(rank=r), tag="instruct") for r in (1, 2, 3)])
    seconds = time.perf_counter() - start
    print(f"SmolLM2 3 x 64 tokens: {seconds:.1f}s (including load)")
    assert len(out) == 3 and len({c.text for c in out}) == 3
    for c in out:
        assert 0 < c.completion_tokens <= 64 and len(c.text.split()) >= 5
    # instruction-tuned: a chat request gets a real answer too
    [chat] = llm.complete(
        [ChatRequest(messages=user("Name one Python library for machine learning."), max_tokens=32)]
    )
    assert chat.text.strip()
