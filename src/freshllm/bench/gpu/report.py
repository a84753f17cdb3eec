"""The summary: the results table, the recommended attention path, number formatting."""

from __future__ import annotations

import re

from .shapes import PATHS, TABLE_ORDER


def fmt(x, spec, na="-"):
    if x is None:
        m = re.match(r"[<>^]?(\d+)", spec)
        return na.rjust(int(m.group(1))) if m else na
    return format(x, spec)


def table(results: list[dict], peak: float | None, measured: float | None) -> list[str]:
    hdr = (f"{'model':<13} {'path':<18} {'batch':>5} {'tok/s':>9} {'TFLOP/s':>8} {'MFU':>6} "
           f"{'MFU(6N)':>7} {'MFU/meas':>8} {'mem GiB':>8} {'step s':>7} {'1st s':>6} "
           f"{'fp32 |d|':>9} {'bf16 |d|':>9} {'bf16 tol':>8} {'leak':>7} exact")
    lines = [hdr, "-" * len(hdr)]
    order = {m: i for i, m in enumerate(TABLE_ORDER)}
    for r in sorted(results, key=lambda r: (order.get(r["model"], 9), list(PATHS).index(r["path"]))):
        if "tokens_per_s" not in r and "check" not in r:
            lines.append(f"{r['model']:<13} {r['path']:<18} {r.get('batch', '-'):>5} "
                         f"{r.get('status', 'error')}: {r.get('error', '')[:150]}")
            continue
        c = r.get("check") or {}
        tps = r.get("tokens_per_s")
        tf = r.get("model_tflops")
        tf6 = tps * r["flops_per_token_6n"] / 1e12 if tps else None
        bs = f"{r['batch']}{'c' if r['grad_ckpt'] else ''}"
        lines.append(
            f"{r['model']:<13} {r['path']:<18} {bs:>5} {fmt(tps, '>9,.0f')} {fmt(tf, '>8.1f')} "
            f"{fmt(peak and tf and tf / peak, '>6.1%')} {fmt(peak and tf6 and tf6 / peak, '>7.1%')} "
            f"{fmt(measured and tf and tf / measured, '>8.1%')} {fmt(r.get('peak_mem_gib'), '>8.1f')} "
            f"{fmt(r.get('step_s_mean'), '>7.3f')} {fmt(r.get('first_step_s'), '>6.1f')} "
            f"{fmt(c.get('max_abs_diff_fp32'), '>9.2e')} {fmt(c.get('max_abs_diff_bf16'), '>9.2e')} "
            f"{fmt(c.get('tol_bf16'), '>8.3f')} {fmt(c.get('leak_fp32'), '>7.3f')} "
            f"{'yes' if c.get('exact') else ('NO' if c else '-')}"
            + (f"  [{r['note']}]" if r.get("note") else "")
            + (f"  [{r['oom']}]" if r.get("oom") else ""))
    return lines


def recommend(results: list[dict]) -> dict | None:
    """The fastest exact per-article path, by tokens/s summed over the models it ran on with
    every other exact path (ties: the 1.5B model's figure)."""
    ok = [r for r in results if r.get("packed") and "tokens_per_s" in r
          and (r.get("check") or {}).get("exact")]
    if not ok:
        return None
    by_model: dict[str, dict[str, float]] = {}
    for r in ok:
        by_model.setdefault(r["model"], {})[r["path"]] = r["tokens_per_s"]
    paths = {r["path"] for r in ok}
    # compare paths on the models where every candidate ran; else on 1.5B; else anywhere
    common = [m for m, d in by_model.items() if paths <= set(d)]
    pool = common or ([m for m in by_model if m == "qwen2.5-1.5b"] or list(by_model))
    score = {p: sum(by_model[m].get(p, 0.0) / max(by_model[m].values()) for m in pool) for p in paths}
    best = max(score, key=score.get)
    return {"path": best, "attn_implementation": PATHS[best][0], "compared_on": sorted(pool),
            "relative_speed": score}

