"""GPU cpt-step throughput, MFU and per-article exactness of each attention path, at 4096 tokens.

    PYTHONPATH=src python -m freshllm.bench.gpu [--json gpu.json] [--budget-s 420]
        [--models qwen2.5-0.5b,qwen2.5-1.5b,llama3.2-3b] [--paths sdpa_packed,flex_packed,...]
        [--batch 4 | --batch qwen2.5-1.5b=4,llama3.2-3b=2] [--grad-ckpt] [--peak-tflops 989]
    python -m freshllm.bench.gpu --tiny            # CPU smoke run (tiny shapes), used by the tests

On one H200 the default run (3 models x sdpa_packed, flex_packed, sdpa_nomask, then
eager_packed) ends within ``--budget-s`` (420 s) + 40 s hard stop + start-up, i.e. under 8
minutes; configs that would not fit are skipped and listed as such. Output: a table on
stdout and, with ``--json``, every figure (rewritten after each config).

Needs only the standard library, torch and transformers, and imports nothing else from the
project (the exact hub configs are data: ``models.json``, written from the project's), so this
directory alone on a machine without the project is enough. Run it as a module (``-m``): the
package's modules import one another relatively. They are ``shapes`` (models, paths, hub
configs, FLOPs per token, the bf16 peak table, packed rows), ``checks`` (device
and memory helpers, the matmul probe, the exactness check), ``steps`` (the flex path's
registration, the model, the timed cpt steps, ``run_config``: one config), ``report`` (the
table and the recommended path) and ``cli`` (arguments, budget, OOM retries, the JSON).

One *cpt step* is what ``freshllm.train.train`` does per optimizer step under
``mixed_precision: bf16``: fp32 master weights, forward and loss under
``torch.autocast(bfloat16)`` (what accelerate's bf16 mode wraps the forward in), backward,
``clip_grad_norm_(1.0)``, ``torch.optim.AdamW`` (betas 0.9/0.95, weight decay 0.1 off
embeddings and 1-d weights, torch's default foreach implementation), ``zero_grad``, and the
loss read back with ``.item()`` (the loop logs it every step). Weights are random (hub
configs: real widths, depths, vocab sizes); inputs are packed rows of ``--seq`` tokens made
the way ``freshllm.io.packed.PackWriter`` makes them: articles of log-normal length
back to back, position ids restarting at 0 per article, an article that does not fit
continues in the next row with continuing positions; labels are -100 at article starts.

Attention paths (``--paths``):

* ``sdpa_packed``  attn_implementation="sdpa", attention_mask=None + the reset position ids:
  transformers derives the block-diagonal causal mask (what the project trains with);
* ``flex_packed``  transformers' flex_attention forward and BlockMask (derived from the same
  position ids, ``create_block_mask``; flex_attention is torch.compile'd by transformers on
  first use, that compile is in the warmup steps and reported as ``first step``). Registered
  as ``flex_attention_autocast``: q/k/v are cast to the autocast dtype first (the rotary
  embedding leaves q/k in fp32 under autocast; torch's flex HOP may reject the mix or, on
  some versions, silently run fp32 kernels);
* ``flex_plain_packed`` (not default) transformers' own ``flex_attention`` without that cast;
* ``eager_packed`` the eager reference (a dense 4-d mask, full S x S scores);
* ``sdpa_nomask``  one document per row (position ids 0..S-1): plain causal sdpa, the
  ceiling; ``flex_nomask`` and ``eager_nomask`` likewise (not default).

Reported per (model, path): tokens/s per GPU (timed steps only, after ``--warmup`` steps,
``torch.cuda.synchronize()`` around each step), MFU against the bf16 dense peak
(``--peak-tflops``, default by GPU name: H100/H200 989 TFLOP/s) and against the bf16
matmul rate measured here at start, peak ``torch.cuda.max_memory_allocated``, and the
per-article exactness check. FLOPs per token: 6*N with N the parameters used in matmuls
(all but the input-embedding lookup; a tied lm_head counts once), plus attention
12 * layers * heads * head_dim per attended (query, key) pair -- only the pairs the mask
allows (per-article causal), i.e. the useful work, not what a dense-mask kernel executes.
``MFU`` is (6N + attention) / peak; ``MFU(6N)`` is also given. Gradient-checkpoint
recompute is not counted.

Exactness: with the trained weights, in eval mode, the logits of each checked article inside
its packed row are compared with the logits of that article run alone (its tokens and
position ids first in a row of its own, the rest of the row a filler that continues its
positions: causal attention keeps the filler out, and the row is one document, so the plain
causal path runs). In fp32 (no autocast, matmul TF32 as torch's default: off) the max
|difference| must be <= 2e-3 x max(1, max |logit|) (a kernel's reassociation gives ~1e-5);
under bf16 autocast it must be <= max(0.02, 3 x the bf16 rounding noise of the reference,
i.e. max |logits_alone_bf16 - logits_alone_fp32|). The same article's logits when the
attention is NOT split by article (a 2-d all-ones attention_mask disables the derivation:
the packing pitfall) are reported as ``leak`` so one can see the check discriminates.

Budget: configs run in priority order (the 1.5B model first, exact paths before eager);
before each, its time is estimated from what already ran and it is skipped if it would
end past ``--budget-s``; a running config stops its timed loop at the budget, and a hard
alarm at budget + 40 s aborts whatever runs (a compile that hangs) and reports. CUDA OOM:
the batch is halved and the config retried (at batch 1: with gradient checkpointing), and
the OOM is reported. The JSON (``--json``) is rewritten after every config.
"""

# the public names; the driver (``cli.run``) calls ``cli.run_config``, so that is what a test
# replaces (run_config is deliberately not re-exported here: patching a copy would do nothing)
from .checks import Dev, exactness
from .cli import BudgetExceeded, main, parse_batch, plan
from .report import recommend, table
from .shapes import (DEFAULT_BATCH, DEFAULT_PATHS, EAGER_BATCH, FLEX_NAME, MODELS, PATHS,
                     PEAK_TFLOPS, TOL_BF16_FLOOR, TOL_BF16_NOISE_X, TOL_FP32, DocStream,
                     attention_flops_per_pair, head_dim, make_batch, matmul_params, model_config,
                     param_count, spec_peak)

__all__ = ["DEFAULT_BATCH", "DEFAULT_PATHS", "EAGER_BATCH", "FLEX_NAME", "MODELS", "PATHS",
           "PEAK_TFLOPS", "TOL_BF16_FLOOR", "TOL_BF16_NOISE_X", "TOL_FP32", "BudgetExceeded", "Dev",
           "DocStream", "attention_flops_per_pair", "exactness", "head_dim", "main", "make_batch",
           "matmul_params", "model_config", "param_count", "parse_batch", "plan", "recommend", "spec_peak", "table"]
