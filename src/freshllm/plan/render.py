"""The human form of a plan: one aligned line per stage, the total, the cpt memory breakdown,
the Appendix A comparison and the assumptions."""

from __future__ import annotations

from .formulas import GiB


def count(n: float | None, approx: bool = False) -> str:
    if n is None:
        return "-"
    for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            text = f"{n / div:.3g}{unit}"
            break
    else:
        text = f"{n:.0f}"
    return ("~" if approx else "") + text


def size(b: float | None) -> str:
    if b is None:
        return "-"
    if b == 0:
        return "0"
    for div, unit in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(b) >= div:
            return f"{b / div:.3g} {unit}" if b / div < 100 else f"{b / div:.0f} {unit}"
    return f"{b:.0f} B"


def duration(s: float | None) -> str:
    if s is None:
        return "-"
    if s >= 2 * 86400:
        return f"{s / 86400:.1f} d"
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    if s >= 60:
        return f"{s / 60:.0f} min"
    return f"{s:.0f} s"


def flops(f: float | None) -> str:
    return "-" if not f else f"{f:.2e}"


def _row(r: dict) -> list[str]:
    m = r.get("model")
    params = f"{count(m['parameters'])}/{count(m['non_embedding_parameters'])}" if m else "-"
    fl = r.get("flops") or {}
    f = fl.get("train_6ND") or fl.get("forward_2N") or fl.get("elementwise")
    mem = r.get("memory") or {}
    fits = "-" if "fits" not in mem else ("yes" if mem["fits"] else "NO")
    t = r.get("time")
    device = r["device"] if r["device"] != "gpu" else f"gpu x{r.get('processes', 1)}"
    return [r["stage"], device, params, count(r.get("tokens"), r.get("estimate", False)), flops(f),
            size(r.get("bytes_moved")), size(r["disk"]["bytes"]), size(mem.get("peak")), fits,
            duration(t["seconds"]) if t else ("network" if r["device"] == "network" else "-"),
            f"{t['gpu_hours']:.1f}" if t and t["gpu_hours"] else "-"]


HEADER = ["stage", "device", "params tot/non-emb", "tokens", "FLOPs", "moved", "disk out",
          "mem/proc", "fits", "time", "GPU-h"]


def table(plan: dict) -> str:
    rows = [HEADER] + [_row(r) for name, r in plan.items() if name != "total"]
    tot = plan["total"]
    mem = tot["memory"]
    rows.append(["total", "", "", f"{count(tot['tokens']['cpt'])}+{count(tot['tokens']['eval_estimate'], True)}",
                 flops(tot["flops"]), "", size(tot["disk"]["total"]), size(mem["peak_per_process"]),
                 "-" if mem["fits"] is None else ("yes" if mem["fits"] else "NO"),
                 duration(tot["time"]["seconds"]), f"{tot['time']['gpu_hours']:.1f}"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    right = {3, 4, 5, 6, 7, 9, 10}
    lines = []
    for i, r in enumerate(rows):
        cells = [c.rjust(w) if j in right else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths))]
        lines.append("  ".join(cells).rstrip())
        if i == 0 or i == len(rows) - 2:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _memory_line(r: dict) -> list[str]:
    mem = r["memory"]
    pp = mem["per_process"]
    par = mem["parallel"]
    how = {"single": "1 process", "ddp": f"DDP x{par['processes']}",
           "fsdp": f"FSDP x{par['processes']} (fp32 state / {par['shard']})"}[par["kind"]]
    unit, div = ("GiB", GiB) if mem["peak"] >= GiB else ("MiB", 2**20)
    g = lambda k: f"{pp[k] / div:.2f}"  # noqa: E731
    parts = [f"weights {g('weights')}", f"grads {g('gradients')}", f"AdamW m+v {g('optimizer')}"]
    if pp["ddp_buckets"]:
        parts.append(f"DDP buckets {g('ddp_buckets')}")
    parts += [f"{'gathered units' if par['kind'] == 'fsdp' else 'bf16 weight copies'} {g('compute_copies')}",
              f"activations {g('activations')}", f"loss {g('loss')}", f"overhead {g('overhead')}"]
    ck = "with" if mem["activation_checkpointing"] else "without"
    head = (f"cpt memory per process ({how}, micro-batch {mem['micro_batch']} x {mem['seq_len']} tokens, "
            f"mixed_precision {mem['mixed_precision']}, {ck} activation checkpointing), {unit}:")
    verdict = ""
    if "fits" in mem:
        verdict = (f" of {mem['gpu_memory'] / div:.1f} ({mem['gpu']}): "
                   + ("fits" if mem["fits"] else f"does NOT fit, short by {-mem['headroom'] / div:.1f}"))
    acc = mem["accelerate_estimate_memory"]
    est = acc["float32"]
    missing = mem["weights_grads_adam_unsharded"] - est["training_using_adam"]
    return [head,
            "  " + " + ".join(parts) + f" = {mem['peak'] / div:.2f}" + verdict,
            f"  activations with checkpointing {mem['activations_checkpointed'] / div:.2f}, without "
            f"{mem['activations_full'] / div:.2f}; fp32 logits {mem['logits_fp32'] / div:.2f} (the loss holds 3.5x)",
            f"  accelerate estimate-memory, reproduced (AutoModel in fp32, {count(acc['parameters_counted'])} params): "
            f"total {est['total_size'] / div:.2f}, training using Adam {est['training_using_adam'] / div:.2f}; "
            f"ours, weights+grads+AdamW unsharded: {mem['weights_grads_adam_unsharded'] / div:.2f}"
            + (f" (+{missing / div:.2f}: the untied lm_head it leaves out)" if missing else " (the same)")]


def report(plan: dict) -> str:
    tot = plan["total"]
    out = [f"plan for {tot['params_file']}: {tot['launch']['describe']}; "
           f"{tot['gpu']['name']} ({tot['gpu']['memory'] / GiB:.1f} GiB, {tot['gpu']['bf16_tflops']:g} "
           f"TFLOP/s bf16 dense)", "", table(plan), ""]
    cpt = [r for n, r in plan.items() if n != "total" and r["kind"] == "cpt"]
    if cpt:
        worst = max(cpt, key=lambda r: r["memory"]["peak"])
        out += _memory_line(worst)
        same = all(r["memory"]["peak"] == worst["memory"]["peak"] for r in cpt)
        out[-4] += "" if same else f" [{worst['stage']}, the largest]"
    if cpt:
        r = cpt[0]
        fl = r["flops"]
        out.append(f"cpt FLOPs: 6ND with N = all {count(r['model']['parameters'])} parameters (embeddings "
                   f"included, as metrics/cpt/*.json and the paper's A.2 count them); refined: "
                   f"6 x {count(r['model']['parameters'] - r['model']['embedding_parameters'] + r['model']['vocab'] * r['model']['hidden'])} "
                   f"(non-embedding + the lm_head matmul, no input lookup) + attention 12·L·d·seq "
                   f"= {fl['refined'] / fl['train_6ND']:.3f} x 6ND; with recomputation the GPUs do "
                   f"{fl['hardware_with_recompute'] / fl['train_6ND']:.2f} x 6ND")
    ev = [r for n, r in plan.items() if n != "total" and r["kind"] == "eval"]
    if ev:
        et = ev[0]["eval_tokens"]
        out.append(f"eval (estimate, per model): ~{count(et['prompt'])} prompt tokens + up to "
                   f"{count(et['generated_upper_bound'])} generated (every generation counted to its limit), "
                   f"2N FLOPs per token; time = prefill at the MFU + decode bound by reading the weights "
                   f"once per step of {ev[0]['memory']['batch']} sequences")
    d = tot["disk"]
    out.append(f"disk: outputs {size(d['outputs'])} + DVC cache {size(d['dvc_cache_extra'])} ({d['cache']}) "
               f"+ cpt checkpoints {size(d['transient_checkpoints_peak'])} at most = {size(d['total'])}")
    ift = tot.get("instruction_ft_avoided")
    if ift:
        ratios = ", ".join(f"{v:,.0f}x {k}" for k, v in ift["ratio_vs_cpt"].items())
        out.append(f"instruction FT avoided ({ift['source']}): 6 x {count(ift['parameters'])} params x "
                   f"{count(ift['tokens'])} tokens x {ift['epochs']} epochs = {ift['flops']:.2e} FLOPs = "
                   f"{ratios} (the paper: {ift['paper_ratio']:,.0f}x, 5 cpt epochs)")
    a = tot["assumptions"]
    thr = (f"{tot['throughput']['tokens_per_s_per_gpu']:g} tokens/s per GPU" if "tokens_per_s_per_gpu"
           in tot["throughput"] else f"MFU {a['mfu']:g} of the bf16 peak")
    out.append(f"assumptions: cpt time = 6ND / (GPUs x peak x MFU) at {thr}; {a['overhead_bytes'] / GiB:g} GiB "
               f"runtime overhead per GPU process; ~ marks estimates (eval tokens, crawl size); total tokens = "
               f"cpt + eval; {tot['time']['note']}")
    notes = sorted({n for name, r in plan.items() if name != "total" for n in r.get("notes", [])
                    if any(k in n for k in ("NOT fit", "refuse", "not in dvc.yaml", "is what runs",
                                            "no cost model", "not sized"))})
    out += [f"note: {n}" for n in notes]
    return "\n".join(out)
