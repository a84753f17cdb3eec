"""The arithmetic of the plan: parameters, FLOPs, bytes. Pure functions of a model shape and
the run's settings (no I/O, no torch), each one tested on a hand-computed case.

Conventions (bytes are plain bytes; the CLI prints binary units, GiB = 2**30):

* **Parameters** ``N`` count every stored tensor once (tied embeddings once), as
  ``sum(p.numel() for p in model.parameters())`` does -- what ``freshllm.cpt`` records as
  ``parameters`` and multiplies into its ``flops`` metric, and what the paper's Appendix A
  calls N (8B). *Non-embedding* parameters (Kaplan et al. 2020, "Scaling Laws for Neural
  Language Models", sec. 2.1) leave out the vocabulary matrices: the input embedding and an
  untied ``lm_head``.
* **Training FLOPs** ``6·N·D`` (Kaplan et al. 2020 sec. 2.1; Hoffmann et al. 2022 appendix F;
  paper Appendix A.2): forward 2·N and backward 4·N per token. ``N`` includes the embeddings
  so the plan is comparable with the cpt metrics and Appendix A; strictly the input-embedding
  lookup is no matmul, so the *refined* count uses ``N_nonemb + V·d`` (the lm_head matmul,
  tied or not) and adds the attention-score term ``12·L·d_attn·seq`` per token
  (Chowdhery et al. 2022, PaLM, appendix B: QK^T and AV, forward + backward, counted dense
  over the whole packed row; the per-article block-diagonal mask does less work).
* **Eval FLOPs** ``2·N`` per token processed (forward only).
* **Memory** per training process: fp32 master weights, fp32 gradients and AdamW's fp32 m
  and v (``freshllm.cpt`` always loads float32 masters, whatever the source dtype), divided
  by the shard group under FSDP full shard; plus what each parallelism adds (DDP gradient
  buckets, bf16 compute copies of the weights, FSDP's gathered units), activations and the
  loss. See :func:`train_memory` for each term and its source.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

GiB = 2**30

DTYPE_BYTES = {"float64": 8, "float32": 4, "bfloat16": 2, "float16": 2, "int8": 1}

# io/packed.py: input_ids uint32 + position_ids uint32 + loss_mask uint8 per token
PACKED_BYTES_PER_TOKEN = 4 + 4 + 1

# AdamW state per parameter: exp_avg and exp_avg_sq in the parameter's dtype (fp32 masters)
ADAM_STATES = 2


def dtype_bytes(name: str) -> int:
    try:
        return DTYPE_BYTES[name.removeprefix("torch.")]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r} (known: {', '.join(DTYPE_BYTES)})") from None


@dataclass(frozen=True)
class Shape:
    """The facts of a decoder-only transformer with a gated (SwiGLU) MLP, RMSNorm and grouped-
    query attention (LLaMA 3.x, Qwen2/2.5 and the local tiny Llama) that the cost depends on."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "Shape":
        """From an HF ``config.json`` dict (``LlamaConfig`` / ``Qwen2Config`` keys)."""
        heads = cfg["num_attention_heads"]
        return cls(
            layers=cfg["num_hidden_layers"], hidden=cfg["hidden_size"],
            intermediate=cfg["intermediate_size"], heads=heads,
            kv_heads=cfg.get("num_key_value_heads") or heads,
            head_dim=cfg.get("head_dim") or cfg["hidden_size"] // heads,
            vocab=cfg["vocab_size"], tied=bool(cfg.get("tie_word_embeddings", False)),
            qkv_bias=cfg.get("model_type") == "qwen2" or bool(cfg.get("attention_bias", False)),
            o_bias=cfg.get("model_type") != "qwen2" and bool(cfg.get("attention_bias", False)),
            mlp_bias=bool(cfg.get("mlp_bias", False)))

    @property
    def d_q(self) -> int:
        """Width of the queries (and of the attention output): heads x head_dim."""
        return self.heads * self.head_dim

    @property
    def d_kv(self) -> int:
        """Width of the keys and of the values: kv_heads x head_dim."""
        return self.kv_heads * self.head_dim

    @property
    def layer_params(self) -> int:
        """One decoder layer: q/k/v/o projections (+ biases), gate/up/down, two RMSNorms."""
        h, i = self.hidden, self.intermediate
        attn = h * self.d_q + 2 * h * self.d_kv + self.d_q * h
        attn += (self.d_q + 2 * self.d_kv) * self.qkv_bias + h * self.o_bias
        mlp = 3 * h * i + (2 * i + h) * self.mlp_bias
        return attn + mlp + 2 * h

    @property
    def layer_matmul_params(self) -> int:
        """The weight matrices of one decoder layer (what a bf16 autocast copy is made of)."""
        h, i = self.hidden, self.intermediate
        return h * self.d_q + 2 * h * self.d_kv + self.d_q * h + 3 * h * i

    @property
    def embedding_params(self) -> int:
        """The vocabulary matrices: the input embedding, and lm_head when untied."""
        return self.vocab * self.hidden * (1 if self.tied else 2)

    @property
    def root_params(self) -> int:
        """Everything outside the decoder layers (embedding, untied lm_head, final norm): the
        root unit FSDP wraps last."""
        return self.embedding_params + self.hidden

    @property
    def params(self) -> int:
        return self.layers * self.layer_params + self.root_params

    @property
    def non_embedding_params(self) -> int:
        return self.params - self.embedding_params

    @property
    def compute_params(self) -> int:
        """Parameters that take part in a matmul per token: all but the input embedding (a
        lookup), with the lm_head matmul (V x d) counted even when it shares the embedding."""
        return self.non_embedding_params + self.vocab * self.hidden


# --- FLOPs -------------------------------------------------------------------------------

def train_flops(params: int, tokens: int) -> int:
    """6·N·D: forward (2·N) + backward (4·N) per token (Kaplan et al. 2020, sec. 2.1)."""
    return 6 * params * tokens


def attention_train_flops_per_token(shape: Shape, seq_len: int) -> int:
    """12·L·d_attn·seq: QK^T and AV of every layer over a full row of ``seq_len``, forward and
    backward (PaLM, Chowdhery et al. 2022, appendix B: 6N + 12·L·H·Q·T)."""
    return 12 * shape.layers * shape.d_q * seq_len


def forward_flops(params: int, tokens: int) -> int:
    """2·N per token, forward only (evaluation)."""
    return 2 * params * tokens


# --- training memory (per process) --------------------------------------------------------

@dataclass(frozen=True)
class Parallel:
    """How the weights are laid out over the processes of one run."""

    kind: str = "single"             # single | ddp | fsdp
    processes: int = 1
    shard: int = 1                   # processes the fp32 state is split over (FSDP)
    reshard_after_forward: bool = True   # FSDP: False keeps all gathered params until backward


@dataclass(frozen=True)
class Regime:
    """Bytes per element of what a decoder layer saves for its backward, by precision regime
    (transformers' LLaMA / Qwen2 code, read off ``torch.autograd.graph.saved_tensors_hooks``):

    * ``fp32``: no mixed precision; every saved tensor is fp32;
    * ``autocast``: fp32 master weights under bf16 autocast (single process / DDP): the residual
      stream and both RMSNorm tensors stay fp32, and every projection casts its input to bf16
      separately (q, k, v: 3 copies; gate, up: 2);
    * ``bf16``: bf16 parameters (FSDP's gathered param_dtype under mixed precision): a bf16
      residual stream, RMSNorm's fp32 upcast + bf16 normalized tensor, one shared input per
      projection group.
    """

    name: str
    act: int        # a matmul's output / activation element (Q, K, V, MLP intermediates)
    resid: int      # the residual stream (a checkpointed layer's stored input)
    norm: int       # one RMSNorm: its (upcast) input and the normalized tensor
    attn_in: int    # the q/k/v projections' input copies together
    mlp_in: int     # the gate/up projections' input copies together


REGIMES = {
    "fp32": Regime("fp32", act=4, resid=4, norm=4 + 4, attn_in=4, mlp_in=4),
    "autocast": Regime("autocast", act=2, resid=4, norm=4 + 4, attn_in=3 * 2, mlp_in=2 * 2),
    "bf16": Regime("bf16", act=2, resid=2, norm=4 + 2, attn_in=2, mlp_in=2),
}


def regime(mixed_precision: str, bf16_params: bool) -> Regime:
    """The regime of a run: ``mixed_precision`` no -> fp32; else bf16 params (FSDP) or autocast."""
    if mixed_precision not in ("bf16", "fp16"):
        return REGIMES["fp32"]
    return REGIMES["bf16" if bf16_params else "autocast"]


def activation_bytes_per_layer(shape: Shape, seq_len: int, micro_batch: int, rg: Regime,
                               packed: bool = True) -> int:
    """Bytes one decoder layer keeps for its backward pass, for ``micro_batch`` rows of
    ``seq_len`` tokens. The method is that of Korthikanti et al. 2022 ("Reducing Activation
    Recomputation in Large Transformer Models", sec. 4.1: count every tensor an op saves for
    its backward), applied to a gated-MLP, GQA, dropout-free decoder with a fused attention
    kernel (sdpa: no seq x seq scores saved, so their ``5·a·s/h`` softmax/dropout term is
    absent). Per token:

    * two RMSNorms: ``rg.norm`` x h each;
    * attention: the projections' input copies (``rg.attn_in`` x h), and Q, K, V and the output
      (= o_proj input), ``rg.act`` each; packed rows carry a block-diagonal mask, with which
      transformers' sdpa path repeats K and V to all heads (``repeat_kv``), so K and V are d_q
      wide (d_kv without packing);
    * MLP: the gate/up input copies (``rg.mlp_in`` x h), gate and up outputs, SiLU(gate) and
      the product (= down_proj input), intermediate-wide, ``rg.act`` each.

    Their GPT layer (4h GeLU MLP, dropout, unfused attention) gives 34·s·b·h + 5·a·s²·b
    (16-bit) instead. Small tensors (rsqrt, RoPE tables, the attention log-sum-exp) are left out."""
    d_k = shape.d_q if packed else shape.d_kv
    per_token = ((2 * rg.norm + rg.attn_in + rg.mlp_in) * shape.hidden
                 + rg.act * (2 * shape.d_q + 2 * d_k + 4 * shape.intermediate))
    return seq_len * micro_batch * per_token


def head_activation_bytes(shape: Shape, seq_len: int, micro_batch: int, rg: Regime,
                          packed: bool = True) -> int:
    """The final RMSNorm's tensors and the lm_head input, plus the packed rows' attention mask
    (b x s x s in the activation dtype, shared by all layers)."""
    mask = micro_batch * seq_len * seq_len * rg.act if packed else 0
    return seq_len * micro_batch * shape.hidden * (rg.norm + rg.act) + mask


def activation_bytes(shape: Shape, seq_len: int, micro_batch: int, checkpointing: bool, rg: Regime,
                     packed: bool = True) -> int:
    """All layers' activations. With gradient checkpointing (each decoder layer recomputed in
    the backward pass: Chen et al. 2016; Korthikanti et al. 2022 sec. 4.2 "full recomputation")
    only each layer's input stays (the residual stream, ``rg.resid`` per element), plus one
    layer's full set while it is recomputed."""
    layer = activation_bytes_per_layer(shape, seq_len, micro_batch, rg, packed)
    head = head_activation_bytes(shape, seq_len, micro_batch, rg, packed)
    if checkpointing:
        return shape.layers * seq_len * micro_batch * shape.hidden * rg.resid + layer + head
    return shape.layers * layer + head


def logits_bytes(shape: Shape, seq_len: int, micro_batch: int) -> int:
    """The fp32 logits of one micro-batch: batch x seq x vocab x 4 bytes."""
    return micro_batch * seq_len * shape.vocab * 4


def loss_peak_bytes(shape: Shape, seq_len: int, micro_batch: int, logits_dtype_bytes: int = 2) -> int:
    """What the loss holds at the start of the backward pass, per batch x seq x vocab element:
    the logits the model returns (``logits_dtype_bytes``; bf16 under autocast, kept by the output
    object), and in fp32 (transformers' ``ForCausalLMLoss`` upcasts) the log-softmax output saved
    by cross-entropy, its gradient and the gradient of the logits: 2 + 3 x 4 = 14 bytes under bf16
    (16 in fp32), i.e. 3.5x the fp32 logits tensor."""
    return micro_batch * seq_len * shape.vocab * (logits_dtype_bytes + 3 * 4)


def train_memory(shape: Shape, seq_len: int, micro_batch: int, par: Parallel, mixed_precision: str,
                 checkpointing: bool, overhead: int = 2 * GiB) -> dict[str, int]:
    """Peak bytes per training process, by component (``peak`` is their sum).

    * ``weights``, ``gradients``, ``optimizer``: fp32 masters (4 B), fp32 grads (4 B), AdamW m and
      v (2 x 4 B) per parameter -- 16·N, accelerate's ``estimate-memory`` "Training using Adam"
      for float32 (4 x the fp32 model size; it leaves out an untied lm_head, see
      :func:`accelerate_estimate_memory`); divided by ``par.shard`` (FSDP), not for DDP;
    * ``ddp_buckets``: DDP's gradient buckets, a second fp32 copy of the gradients
      (``gradient_as_bucket_view=False``, the default accelerate passes; PyTorch DDP docs);
    * ``compute_copies``: bf16 weights the matmuls run on. Single/DDP under autocast: the cast
      copies saved for the backward: every matmul weight (the layers' projections and the lm_head)
      without checkpointing,
      the lm_head and the one recomputed layer with it. FSDP: the gathered units in param_dtype
      (bf16 under mixed precision) -- the root unit (embedding, lm_head, final norm; the root is
      not resharded after forward) and two decoder layers (current + prefetched), and unsharded
      gradients of the root and one layer before their reduce-scatter (reduce_dtype = bf16);
      with ``reshard_after_forward`` off every parameter stays gathered;
    * ``activations`` (:func:`activation_bytes`), ``loss`` (:func:`loss_peak_bytes`);
    * ``overhead``: CUDA context, NCCL buffers, allocator fragmentation (an assumption).
    """
    n = shape.params
    bf16 = mixed_precision in ("bf16", "fp16")
    rg = regime(mixed_precision, bf16_params=par.kind == "fsdp")
    mem = {
        "weights": math.ceil(4 * n / par.shard),
        "gradients": math.ceil(4 * n / par.shard),
        "optimizer": math.ceil(ADAM_STATES * 4 * n / par.shard),
        "ddp_buckets": 4 * n if par.kind == "ddp" else 0,
    }
    if par.kind == "fsdp":
        gathered = n if not par.reshard_after_forward else shape.root_params + 2 * shape.layer_params
        mem["compute_copies"] = rg.act * gathered + rg.act * (shape.root_params + shape.layer_params)
    elif bf16:
        lm_head = shape.vocab * shape.hidden
        mem["compute_copies"] = 2 * (lm_head + (shape.layer_matmul_params if checkpointing
                                                else shape.layers * shape.layer_matmul_params))
    else:
        mem["compute_copies"] = 0
    mem["activations"] = activation_bytes(shape, seq_len, micro_batch, checkpointing, rg)
    mem["loss"] = loss_peak_bytes(shape, seq_len, micro_batch, logits_dtype_bytes=rg.act)
    mem["overhead"] = overhead
    mem["peak"] = sum(mem.values())
    return mem


def accelerate_estimate_memory(shape: Shape, buffers_bytes: int = 0) -> dict[str, Any]:
    """What ``accelerate estimate-memory <model>`` prints (accelerate 1.x, ``commands/estimate.py``),
    reproduced because the command looks the model up on the hub: it builds ``AutoModel`` --
    the decoder *without* the lm_head -- empty in float32, so an untied lm_head (V x d) is not
    counted; "Total Size" is those fp32 bytes (+ buffers) and "Training using Adam" the max of
    ``estimate_training_usage``: for float32 the "step" term, 4 x the fp32 size (= 16 B per
    counted parameter); for the float16 row the optimizer term, 2 x the fp32 size."""
    counted = shape.params - (0 if shape.tied else shape.vocab * shape.hidden)
    fp32 = 4 * counted + buffers_bytes
    return {
        "parameters_counted": counted,
        "float32": {"total_size": fp32, "training_using_adam": max(fp32, fp32, 2 * fp32, 4 * fp32)},
        "float16": {"total_size": fp32 // 2,
                    "training_using_adam": max(fp32, fp32 + fp32 // 2, 2 * fp32, 2 * fp32)},
    }


# --- inference memory ----------------------------------------------------------------------

def kv_cache_bytes_per_token(shape: Shape, dtype_b: int = 2) -> int:
    """K and V of every layer for one token (generation with a KV cache)."""
    return 2 * shape.layers * shape.d_kv * dtype_b


# --- time ----------------------------------------------------------------------------------

def seconds_from_mfu(flops: float, gpus: int, peak_flops_per_gpu: float, mfu: float) -> float:
    """time = FLOPs / (GPUs x peak x MFU) (MFU as defined by PaLM, appendix B)."""
    return flops / (gpus * peak_flops_per_gpu * mfu)


def seconds_from_throughput(tokens: float, gpus: int, tokens_per_s_per_gpu: float) -> float:
    return tokens / (gpus * tokens_per_s_per_gpu)


# --- disk ----------------------------------------------------------------------------------

def checkpoint_bytes(params: int) -> int:
    """One training checkpoint (accelerate ``save_state``): the fp32 model, which *is* the fp32
    master copy here (4 B), and AdamW's m and v (8 B); scheduler and RNG states are negligible.
    A bf16 model with separate fp32 masters would add 2 B more per parameter."""
    return params * (4 + ADAM_STATES * 4)


def checkpoints_on_disk(steps: int, save_every: int, keep_last: int) -> int:
    """How many checkpoints exist at once at most: ``keep_last``, plus the one being written
    before the oldest is deleted (``train._save_checkpoint``); none when ``save_every`` is 0 or
    the run is shorter (no checkpoint at the last step: the final model is saved instead)."""
    if save_every <= 0:
        return 0
    written = (steps - 1) // save_every
    return min(written, keep_last + 1)
