"""Device and memory helpers (sync, peak memory, OOM detection, bf16 autocast), the bf16 matmul
probe, and the per-article exactness check (the package docstring says what it compares)."""

from __future__ import annotations

import contextlib
import gc
import time

from .shapes import TOL_BF16_FLOOR, TOL_BF16_NOISE_X, TOL_FP32, DocStream, make_batch

# --- device helpers ------------------------------------------------------------------------------

class Dev:
    def __init__(self, torch, device):
        self.torch, self.device = torch, device
        self.cuda = device.type == "cuda"

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize(self.device)

    def reset_peak(self):
        if self.cuda:
            self.torch.cuda.reset_peak_memory_stats(self.device)

    def peak_gib(self):
        if not self.cuda:
            return None
        return self.torch.cuda.max_memory_allocated(self.device) / 2**30

    def reserved_gib(self):
        return self.torch.cuda.max_memory_reserved(self.device) / 2**30 if self.cuda else None

    def free(self):
        gc.collect()
        if self.cuda:
            self.torch.cuda.empty_cache()

    def autocast(self, enabled=True):
        return self.torch.autocast(self.device.type, dtype=self.torch.bfloat16, enabled=enabled)

    def is_oom(self, e: BaseException) -> bool:
        oom = getattr(self.torch.cuda, "OutOfMemoryError", None) or getattr(self.torch, "OutOfMemoryError", ())
        return isinstance(e, oom) or "out of memory" in str(e).lower()


def matmul_probe(torch, dev: Dev, n: int, iters: int) -> float:
    """bf16 n x n x n matmul rate (TFLOP/s) on this device."""
    a = torch.randn(n, n, device=dev.device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=dev.device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    dev.sync()
    t = time.perf_counter()
    for _ in range(iters):
        a @ b
    dev.sync()
    dt = time.perf_counter() - t
    del a, b
    return 2 * n**3 * iters / dt / 1e12


def tf32_setting(torch):
    try:
        return bool(torch.backends.cuda.matmul.allow_tf32)
    except Exception:  # noqa: BLE001 -- newer torch: the fp32_precision API only
        return str(getattr(torch.backends.cuda.matmul, "fp32_precision", "?"))


# --- exactness -----------------------------------------------------------------------------------

def forward_logits(model, b, attention_mask=None):
    return model(input_ids=b["input_ids"], position_ids=b["position_ids"],
                 attention_mask=attention_mask, use_cache=False).logits.float()


@contextlib.contextmanager
def attn_impl(model, impl: str):
    """Temporarily switch the model's attention implementation (weights untouched)."""
    old = model.config._attn_implementation
    if impl == old:
        yield
        return
    model.set_attn_implementation(impl)
    try:
        yield
    finally:
        model.set_attn_implementation(old)


def exactness(torch, model, cfg, a, dev: Dev, packed: bool) -> dict:
    """Logits of articles inside packed rows (the path under test) vs the same article alone
    (computed with plain causal sdpa, an independent reference; see the package docstring)."""
    model.eval()
    seq, vocab = a.seq, cfg["vocab_size"]
    rows = max(1, min(2, a.check_rows))
    gen = torch.Generator().manual_seed(a.seed + 17)
    stream = DocStream(a.seed + 17, a.doc_median, a.doc_sigma, a.doc_max)
    stream.row(seq // 3)  # start mid-article: row 0 begins with a continuation
    b = make_batch(torch, rows, seq, vocab, packed, stream, gen, dev.device)
    # the articles to check: row 0 first, then row 1
    want = [(r, s) for r, row in enumerate(b["segments"]) for s in row][: a.check_docs]
    ids_cpu = b["input_ids"].cpu()
    refs = []
    for r, (start, n, p0) in want:
        ids = torch.randint(0, vocab, (seq,), generator=gen)
        ids[:n] = ids_cpu[r, start:start + n]
        refs.append((ids, torch.arange(p0, p0 + seq)))
    while len(refs) % rows:
        refs.append(refs[-1])
    out: dict = {"articles": len(want), "lengths": [s[1] for _, s in want],
                 "continuations": sum(1 for _, s in want if s[2] > 0), "reference": "sdpa"}
    packed_l, alone_l = {}, {}
    with torch.no_grad():
        for prec in ("fp32", "bf16"):  # the path under test, packed rows
            with dev.autocast(enabled=prec == "bf16"):
                lp = forward_logits(model, b)
                packed_l[prec] = [lp[r, s:s + n].clone() for r, (s, n, _) in want]
                del lp
        try:
            ref_ctx = attn_impl(model, "sdpa")
            ref_ctx.__enter__()
        except Exception as e:  # noqa: BLE001 -- fall back to the path itself as reference
            out["reference"] = f"{model.config._attn_implementation} (switch to sdpa failed: {e})"
            ref_ctx = contextlib.nullcontext()
        try:
            for prec in ("fp32", "bf16"):  # each article alone
                with dev.autocast(enabled=prec == "bf16"):
                    alone = []
                    for i in range(0, len(refs), rows):
                        chunk = refs[i:i + rows]
                        rb = {"input_ids": torch.stack([x for x, _ in chunk]).to(dev.device),
                              "position_ids": torch.stack([q for _, q in chunk]).to(dev.device)}
                        la = forward_logits(model, rb)
                        alone += [la[j] for j in range(la.shape[0])]
                        del la
                    alone_l[prec] = [alone[k][:n].clone() for k, (_, (_, n, _)) in enumerate(want)]
                    del alone
            if packed:  # the packing pitfall: the same rows with the per-article split disabled
                ll = forward_logits(model, b, attention_mask=torch.ones_like(b["input_ids"]))
                d = [float((ll[r, s:s + n] - alone_l["fp32"][k]).abs().max())
                     for k, (r, (s, n, _)) in enumerate(want) if s > 0]
                out["leak_fp32"] = max(d) if d else None
                del ll
        finally:
            ref_ctx.__exit__(None, None, None)
    mx = lambda xs, ys: max(float((x - y).abs().max()) for x, y in zip(xs, ys))  # noqa: E731
    out["max_abs_diff_fp32"] = mx(packed_l["fp32"], alone_l["fp32"])
    out["max_abs_diff_bf16"] = mx(packed_l["bf16"], alone_l["bf16"])
    out["bf16_noise"] = mx(alone_l["bf16"], alone_l["fp32"])
    out["max_abs_logit"] = max(float(x.abs().max()) for x in alone_l["fp32"])
    out["tol_fp32"] = TOL_FP32 * max(1.0, out["max_abs_logit"])
    out["tol_bf16"] = max(TOL_BF16_FLOOR, TOL_BF16_NOISE_X * out["bf16_noise"])
    out["exact"] = bool(out["max_abs_diff_fp32"] <= out["tol_fp32"]
                        and out["max_abs_diff_bf16"] <= out["tol_bf16"])
    del packed_l, alone_l
    model.train()
    return out

