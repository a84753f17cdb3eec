"""Shapes of the benchmark: the models, attention paths and micro-batches it runs, their hub
configs (``models.json``: exact, and shrunk in depth and width for ``--tiny``), FLOPs per
token, the bf16 peak table, and the packed input rows.

``models.json`` is data written from the project's hub configs (``python -m freshllm.standins
bench-configs``; a test keeps the two equal), so this package reads it instead of importing
them: it needs nothing from the project on the GPU machine."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

MODELS_FILE = Path(__file__).resolve().parent / "models.json"
_MODELS = json.loads(MODELS_FILE.read_text(encoding="utf-8"))
MODELS = {key: m["hub_id"] for key, m in _MODELS["models"].items()}  # priority order (the goal is at 1.5B)
TABLE_ORDER = ["qwen2.5-0.5b", "qwen2.5-1.5b", "llama3.2-3b"]
# micro-batch (sequences of 4096) that fits one 141 GB H200 with fp32 masters + AdamW,
# no checkpointing; eager keeps S x S scores per layer, so it gets less
DEFAULT_BATCH = {"qwen2.5-0.5b": 4, "qwen2.5-1.5b": 4, "llama3.2-3b": 2}
EAGER_BATCH = {"qwen2.5-0.5b": 2, "qwen2.5-1.5b": 1, "llama3.2-3b": 1}
FLEX_NAME = "flex_attention_autocast"
PATHS = {  # name: (attn_implementation, packed)
    "sdpa_packed": ("sdpa", True),
    "flex_packed": (FLEX_NAME, True),
    "flex_plain_packed": ("flex_attention", True),
    "eager_packed": ("eager", True),
    "sdpa_nomask": ("sdpa", False),
    "flex_nomask": (FLEX_NAME, False),
    "eager_nomask": ("eager", False),
}
DEFAULT_PATHS = ["sdpa_packed", "flex_packed", "sdpa_nomask", "eager_packed"]
# bf16 dense tensor-core peak (TFLOP/s, no sparsity), matched as substrings of the device
# name, first match wins
PEAK_TFLOPS = [("H200", 989.0), ("GH200", 989.0), ("H100 PCIe", 756.0), ("H100 NVL", 835.0),
               ("H100", 989.0), ("H800", 989.0), ("B200", 2250.0), ("A100", 312.0),
               ("A800", 312.0), ("L40S", 362.0), ("L4", 121.0), ("A10", 125.0)]
TOL_FP32 = 2e-3
TOL_BF16_FLOOR = 0.02
TOL_BF16_NOISE_X = 3.0

# --- shapes, FLOPs -------------------------------------------------------------------------------

def model_config(key: str, tiny: bool, vocab: int | None) -> dict:
    """The hub config of model ``key`` (of ``MODELS``), its tiny shrink with ``tiny``."""
    cfg = dict(_MODELS["models"][key]["tiny" if tiny else "config"])
    if vocab:
        cfg["vocab_size"] = vocab
    return cfg


def param_count(cfg: dict) -> int:
    """Parameters of the model ``cfg`` builds (a tied lm_head once), counted on the meta device."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    d = dict(cfg)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(d.pop("model_type"), **d))
    return sum(p.numel() for p in model.parameters())


def head_dim(cfg: dict) -> int:
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def matmul_params(cfg: dict) -> int:
    """Parameters used in matmuls: all but the input-embedding lookup (a tied lm_head once)."""
    n = param_count(cfg)
    return n if cfg["tie_word_embeddings"] else n - cfg["vocab_size"] * cfg["hidden_size"]


def attention_flops_per_pair(cfg: dict) -> int:
    """Training FLOPs (fwd + bwd = 3 x fwd) per attended (query, key) pair, all layers:
    QK^T and PV are 2 * heads * head_dim each forward."""
    return 12 * cfg["num_hidden_layers"] * cfg["num_attention_heads"] * head_dim(cfg)


# --- data ----------------------------------------------------------------------------------------

class DocStream:
    """Article lengths (log-normal, seeded) packed into rows like PackWriter: returns, per row,
    segments (start, length, first_position); a split article continues in the next row."""

    def __init__(self, seed: int, median: float, sigma: float, max_len: int):
        self.rng = random.Random(seed)
        self.mu, self.sigma, self.max_len = math.log(median), sigma, max_len
        self.left = 0  # tokens left of the current article
        self.pos = 0   # its next position

    def _next_doc(self) -> None:
        n = int(round(self.rng.lognormvariate(self.mu, self.sigma)))
        self.left, self.pos = max(2, min(self.max_len, n)), 0

    def row(self, seq: int) -> list[tuple[int, int, int]]:
        segs, filled = [], 0
        while filled < seq:
            if self.left == 0:
                self._next_doc()
            take = min(self.left, seq - filled)
            segs.append((filled, take, self.pos))
            filled += take
            self.left -= take
            self.pos += take
        return segs


def make_batch(torch, rows: int, seq: int, vocab: int, packed: bool, stream: DocStream,
               gen, device) -> dict:
    """input_ids, position_ids, labels on ``device`` plus the segments and attended pairs."""
    ids = torch.randint(0, vocab, (rows, seq), generator=gen)
    if packed:
        segs = [stream.row(seq) for _ in range(rows)]
        pos = torch.empty(rows, seq, dtype=torch.long)
        for r, row in enumerate(segs):
            for start, n, p0 in row:
                pos[r, start:start + n] = torch.arange(p0, p0 + n)
    else:
        segs = [[(0, seq, 0)] for _ in range(rows)]
        pos = torch.arange(seq).repeat(rows, 1)
    labels = ids.masked_fill(pos == 0, -100)
    pairs = sum(n * (n + 1) // 2 for row in segs for _, n, _ in row)
    return {"input_ids": ids.to(device), "position_ids": pos.to(device), "labels": labels.to(device),
            "segments": segs, "pairs": pairs}


# --- bf16 peak -----------------------------------------------------------------------------------

def spec_peak(name: str) -> float | None:
    for key, tf in PEAK_TFLOPS:
        if key.lower() in name.lower():
            return tf
    return None

