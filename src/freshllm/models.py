"""Stage ``models``: provide the ancestor pair (base, instruct).

* ``source: hub`` (paper profile): snapshot both models by id from the Hugging Face hub
  (or copy them from local directories), safetensors only.
* ``source: real``: real trained weights offline (``real_model``, see
  :mod:`freshllm.standins.real`): ``base`` is that model as converted, ``instruct`` is it after
  a short real SFT on the local recipe's chats (the same chats as the local pair's), with the
  model's own chat template. The residual is then this SFT's delta, not the vendor's
  post-training.
* ``source: local`` (default): build a tiny Llama-architecture pair locally and
  deterministically from a seed: a byte-level BPE tokenizer trained on generated text,
  a ``base`` model pre-trained briefly on that text (d1), and an ``instruct`` model made
  from the base by a short real SFT on a generated chat set with verifiable instructions
  (chat template stored in the instruct tokenizer).
* top-level ``world: {kind: toyworld}`` (with ``source: local``): the same recipe on the toy
  world of :mod:`freshllm.synthetic.toyworld` (seed ``world.seed``): d1 is its encyclopedia text,
  the SFT set its chats with IFEval-verifiable instructions about d1 and d1 cloze
  questions (``sft_knowledge_fraction``). The toy world's d2 news is served by the
  crawl stage from the same ``world``.

The training loops are the sections ``models.<family>.pretrain`` and ``models.<family>.sft``
(:class:`LoopConfig`: ``cpt.train``'s keys plus the loop's peak ``lr``), handed to
:func:`freshllm.train.train` as they are; ``real`` runs ``sft`` only.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

from .common import atomic_dir, set_offline, setup_logging, use_runtime, user_errors, write_json
from .config import WorldConfig, load_section
from .train import TrainConfig

log = logging.getLogger(__name__)

BOS, EOS, EOT, PAD = "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|pad|>"
ROLE_TOKENS = ["<|start_header_id|>", "<|end_header_id|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n{{ message['content'] }}<|eot_id|>"
    "{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


@dataclass(frozen=True)
class LoopConfig(TrainConfig):
    """``models.<family>.pretrain`` / ``models.<family>.sft``: the training loop of one phase of
    the pair, exactly what :func:`freshllm.train.train` is given. The keys of ``cpt.train``,
    checked by the same rules, plus the loop's own peak ``lr``; ``steps`` is required. A key a
    section leaves out takes :class:`~freshllm.train.TrainConfig`'s default, as in ``cpt.train``
    (not the other loop's value, nor :class:`ModelsConfig`'s default section's)."""

    # what the models stage has no use for: it keeps no checkpoints, replays nothing, loads the
    # models itself (the local pair is saved in float32, the real one in its own dtype), on the CPU
    UNUSED = ("save_every", "keep_last", "replay_fraction", "save_dtype", "cpu", "trust_remote_code")

    def validate(self) -> list[str]:
        errs = TrainConfig.validate(replace(self, lr=None))  # cpt.train's rules, but the lr
        if self.lr is None:
            errs.append("lr: missing (the loop's peak learning rate)")
        elif self.lr <= 0:
            errs.append(f"lr: must be > 0, got {self.lr}")
        if self.steps is None:
            errs.append("steps: missing (the models stage trains a set number of steps)")
        if self.mixed_precision not in ("no", "bf16"):
            errs.append(f"mixed_precision: must be no or bf16 on the CPU, got {self.mixed_precision!r}")
        defaults = TrainConfig()
        errs += [f"{key}: not used by the models stage (leave it out)" for key in self.UNUSED
                 if getattr(self, key) != getattr(defaults, key)]
        return errs


@dataclass(frozen=True)
class ModelsConfig:
    """``models.<family>``: the pair's source and, for the sources that train (local: both
    loops, real: ``sft`` only), its architecture, data and training loops."""

    source: Literal["local", "hub", "real"] = "local"
    real_model: str = "smollm2-135m-instruct"  # source real: freshllm.standins.real
    seed: int = 0  # the model's init and the generated data (d1 documents, SFT chats); each loop has its own
    vocab_size: int = 1024
    hidden_size: int = 64
    intermediate_size: int = 192
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    max_position_embeddings: int = 4096
    tie_word_embeddings: bool = True
    pretrain_docs: int = 3000
    sft_examples: int = 600
    seq_len: int = 128
    sft_knowledge_fraction: float = 0.25  # toyworld: share of d1 cloze / question chats in v1
    # the training loops (source local: pre-training of base on d1, then SFT of instruct on the
    # chats; source real: the SFT only); the defaults when a section is absent:
    pretrain: LoopConfig = LoopConfig(lr=3e-3, steps=200, batch_size=16, warmup_steps=10,
                                      min_lr_ratio=0.1, weight_decay=0.0)
    sft: LoopConfig = LoopConfig(lr=1e-3, steps=150, batch_size=16, warmup_steps=7,
                                 min_lr_ratio=0.1, weight_decay=0.0)
    hub_base: str | None = None
    hub_instruct: str | None = None
    hub_revision: str | None = None
    trust_remote_code: bool = False
    world: WorldConfig = WorldConfig()  # the top-level `world` section (what `local` builds from)

    def validate(self) -> list[str]:
        errs = []
        if not 0.0 <= self.sft_knowledge_fraction <= 1.0:
            errs.append(f"sft_knowledge_fraction: must be in [0, 1], got {self.sft_knowledge_fraction}")
        if self.source == "hub":
            for key in ("hub_base", "hub_instruct"):
                if not getattr(self, key):
                    errs.append(f"{key}: required when source is 'hub'")
        for key in ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads",
                    "num_kv_heads", "seq_len", "pretrain_docs", "sft_examples"):
            if getattr(self, key) <= 0:
                errs.append(f"{key}: must be > 0")
        if self.num_heads > 0 and self.hidden_size % self.num_heads:
            errs.append("hidden_size: must be divisible by num_heads")
        if self.num_kv_heads > 0 and self.num_heads % self.num_kv_heads:
            errs.append("num_heads: must be divisible by num_kv_heads")
        if self.source == "real":
            from .standins.real import REAL_MODELS

            if self.real_model not in REAL_MODELS:
                errs.append(f"real_model: unknown {self.real_model!r}; known: {sorted(REAL_MODELS)}")
        if self.vocab_size < 300:
            errs.append("vocab_size: must be >= 300 (256 byte symbols + special tokens)")
        return errs


def train_tokenizer(texts: list[str], vocab_size: int):
    """Byte-level BPE (Llama-3 style specials); returns (base_tokenizer, instruct_tokenizer)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  special_tokens=[BOS, EOS, EOT, PAD, *ROLE_TOKENS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)])
    common = dict(tokenizer_object=tok, bos_token=BOS, pad_token=PAD, model_max_length=4096,
                  additional_special_tokens=[EOT, *ROLE_TOKENS])
    base = PreTrainedTokenizerFast(eos_token=EOS, **common)
    instruct = PreTrainedTokenizerFast(eos_token=EOT, **common)
    instruct.chat_template = CHAT_TEMPLATE
    return base, instruct


def build_llama(cfg: ModelsConfig, tokenizer):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(cfg.seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=cfg.tie_word_embeddings,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, attn_implementation="sdpa",
    )
    return LlamaForCausalLM(config)


def sft_documents(tokenizer, chats: list[list[dict]]):
    """(ids, loss_mask) per chat: loss only on the assistant reply (incl. its <|eot_id|>)."""
    for chat in chats:
        prompt = tokenizer.apply_chat_template(chat[:-1], add_generation_prompt=True, tokenize=True)
        full = tokenizer.apply_chat_template(chat, tokenize=True)
        prompt = list(prompt["input_ids"] if hasattr(prompt, "keys") else prompt)
        full = list(full["input_ids"] if hasattr(full, "keys") else full)
        if full[:len(prompt)] != prompt:
            raise ValueError("chat template: prompt is not a prefix of the full conversation")
        yield full, [0] * len(prompt) + [1] * (len(full) - len(prompt))


def local_texts(cfg: ModelsConfig) -> tuple[list[str], list[list[dict]]]:
    """(d1 documents, SFT chats) of the local recipe for ``cfg.world``."""
    if cfg.world.kind == "toyworld":
        from .synthetic import toyworld

        world = toyworld.make_world(cfg.world.seed)
        return (toyworld.d1_documents(world, cfg.pretrain_docs, cfg.seed),
                toyworld.sft_chats(world, cfg.sft_examples, cfg.seed, cfg.sft_knowledge_fraction))
    from .synthetic.corpus import chat_examples, d1_documents

    return d1_documents(cfg.seed, cfg.pretrain_docs), chat_examples(cfg.seed, cfg.sft_examples)


def build_local(cfg: ModelsConfig, base_out: Path, instruct_out: Path) -> dict:
    import copy

    from accelerate import Accelerator
    from transformers import GenerationConfig

    from .io.hf import save_model_dir
    from .io.packed import pack_in_memory
    from .train import train

    docs, chats = local_texts(cfg)
    chat_text = [m["content"] for c in chats for m in c]
    base_tok, inst_tok = train_tokenizer(docs + chat_text, cfg.vocab_size)
    model = build_llama(cfg, base_tok)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("built tiny Llama: %d parameters, vocab %d", n_params, len(base_tok))

    accelerator = Accelerator(cpu=True, mixed_precision=cfg.pretrain.mixed_precision)
    with tempfile.TemporaryDirectory() as tmp:
        ids = base_tok(docs, add_special_tokens=True)["input_ids"]
        d1 = pack_in_memory(((d + [base_tok.eos_token_id], None) for d in ids), cfg.seq_len,
                            Path(tmp) / "d1", pad_id=base_tok.pad_token_id)
        sft = pack_in_memory(sft_documents(inst_tok, chats), cfg.seq_len, Path(tmp) / "sft",
                             pad_id=inst_tok.pad_token_id)
    pre = train(model, d1, cfg.pretrain, accelerator, progress_desc="pretrain base")
    base = accelerator.unwrap_model(model)
    base.generation_config = GenerationConfig(bos_token_id=base_tok.bos_token_id,
                                              eos_token_id=base_tok.eos_token_id,
                                              pad_token_id=base_tok.pad_token_id)
    save_model_dir(base, base_tok, base_out)
    instruct = copy.deepcopy(base)
    accelerator.free_memory()
    sft_stats = train(instruct, sft, cfg.sft, Accelerator(cpu=True, mixed_precision=cfg.sft.mixed_precision),
                      progress_desc="sft instruct")
    instruct.config.eos_token_id = [inst_tok.convert_tokens_to_ids(EOT), base_tok.eos_token_id]
    instruct.generation_config = GenerationConfig(bos_token_id=inst_tok.bos_token_id,
                                                  eos_token_id=instruct.config.eos_token_id,
                                                  pad_token_id=inst_tok.pad_token_id)
    save_model_dir(instruct, inst_tok, instruct_out)
    return {
        "parameters": n_params,
        "world": cfg.world.kind,
        "d1_documents": len(docs),
        "d1_tokens": int(sum(len(d) for d in ids)),
        "sft_chats": len(chats),
        "vocab_size": len(base_tok),
        "pretrain": {k: v for k, v in pre.items() if k != "losses"},
        "sft": {k: v for k, v in sft_stats.items() if k != "losses"},
    }


def build_real(cfg: ModelsConfig, base_out: Path, instruct_out: Path) -> dict:
    """``base``: the real model as converted; ``instruct``: base + SFT on the local chats."""
    import torch
    from accelerate import Accelerator

    from .io.hf import load_causal_lm, load_tokenizer, save_final
    from .io.packed import pack_in_memory
    from .standins.real import real_model_dir
    from .train import train

    src, figures = real_model_dir(cfg.real_model)
    with atomic_dir(base_out) as tmp:
        for f in src.iterdir():
            if f.is_file() and f.name != "checked.json":
                shutil.copy2(f, tmp / f.name)
    tok = load_tokenizer(base_out)
    _, chats = local_texts(cfg)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    with tempfile.TemporaryDirectory() as tmp:
        sft = pack_in_memory(sft_documents(tok, chats), cfg.seq_len, Path(tmp) / "sft", pad_id=pad)
    model = load_causal_lm(base_out, dtype=torch.float32)  # float32 masters; saved in bf16 again
    accelerator = Accelerator(cpu=True, mixed_precision=cfg.sft.mixed_precision)
    sft_stats = train(model, sft, cfg.sft, accelerator, progress_desc="sft instruct")
    save_final(accelerator, model, base_out, instruct_out, str(figures["dtype"]))
    card = instruct_out / "README.md"
    card.write_text(card.read_text(encoding="utf-8") + (
        f"\n## This directory: after a short SFT\n\nThe weights above after {cfg.sft.steps} steps of "
        f"SFT (lr {cfg.sft.lr}, batch {cfg.sft.sequences_per_step(1)} x {cfg.seq_len} tokens) on "
        f"{len(chats)} chats of the `{cfg.world.kind}` world (seed {cfg.world.seed}) with IFEval-verifiable "
        "instructions, made by freshllm.models (source: real). The residual instruct - base is this SFT's "
        "delta, not the vendor's post-training.\n"), encoding="utf-8")
    return {"real_model": cfg.real_model, "checked": figures, "parameters": figures["parameters"],
            "world": cfg.world.kind, "sft_chats": len(chats), "sft_sequences": len(sft),
            "sft": {k: v for k, v in sft_stats.items() if k != "losses"}}


def fetch_hub(cfg: ModelsConfig, base_out: Path, instruct_out: Path) -> dict:
    from .io.hf import check_model_dir, hub_snapshot

    for ref, out in ((cfg.hub_base, base_out), (cfg.hub_instruct, instruct_out)):
        if Path(ref).is_dir():  # a pre-downloaded local snapshot
            check_model_dir(ref)
            tmp = out.with_name(f".{out.name}.copy")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(ref, tmp)
            shutil.rmtree(out, ignore_errors=True)
            tmp.rename(out)
        else:
            hub_snapshot(ref, out, revision=cfg.hub_revision)
    return {"base": cfg.hub_base, "instruct": cfg.hub_instruct, "revision": cfg.hub_revision}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--family", required=True, help="ancestor pair to provide: reads models.<family>")
    ap.add_argument("--base-out", required=True, type=Path)
    ap.add_argument("--instruct-out", required=True, type=Path)
    ap.add_argument("--metrics", required=True, type=Path)
    args = ap.parse_args(argv)
    setup_logging()
    from .io.hf import OfflineError

    with user_errors("models", OfflineError):
        cfg = load_section(ModelsConfig, f"models.{args.family}", args.params)
        runtime = use_runtime(args.params)
        set_offline(cfg.source != "hub")
        if cfg.source == "local":
            stats = build_local(cfg, args.base_out, args.instruct_out)
        elif cfg.source == "real":
            stats = build_real(cfg, args.base_out, args.instruct_out)
        else:
            stats = fetch_hub(cfg, args.base_out, args.instruct_out)
    write_json(args.metrics, {"family": args.family, "source": cfg.source, "config": asdict(cfg), **stats, "runtime": runtime})


if __name__ == "__main__":
    main()
