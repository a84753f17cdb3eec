"""``apply``: merge a residual into a target with a registered merge method (``plain``:
``target + alpha * R``; with ``beta`` and the methods that need ``--base``:
``B + beta * (target - B) + alpha * R``), with the instruct tokenizer."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from ..common import atomic_dir
from ..io.st_stream import ShardedReader, ShardedWriter
from .artifact import dtypes, read_manifest, write_config_and_tokenizer
from .checks import check_base, check_compatible, check_out_path, check_tokenizers, vocab_rows
from .chunks import Scratch, all_finite, check_finite, finite_sum, stream
from .config import ResidualConfig, ResidualError
from .layer_scale import layer_of, relative_changes, relative_norm, report as scale_report, scales
from .methods import get_method
from .modules import GROUPS, is_all, select

__all__ = ["apply", "check_compatible"]


def _selection(cfg: ResidualConfig, target: ShardedReader, target_dir: Path) -> set[str]:
    """The target tensors ``residual.modules`` selects; an entry that matches no tensor of
    the target is an error (a typo, or a group the architecture lacks: tied embeddings have
    no lm_head)."""
    selected, unmatched = select(cfg.modules, target.specs)
    if unmatched:
        tied = " (tied embeddings: the output layer is model.embed_tokens.weight)" if (
            "lm_head" in unmatched and not any(n.endswith("lm_head.weight") for n in target.specs)) else ""
        raise ResidualError(f"residual.modules: {', '.join(map(repr, unmatched))} matches no tensor of the "
                            f"target {target_dir}{tied}; groups: {', '.join(GROUPS)}, or a regex on "
                            "the tensor names")
    return selected


def apply(residual_dir: Path, target_dir: Path, out: Path, cfg: ResidualConfig,
          base_dir: Path | None = None) -> dict:
    """Write the merge of the residual into the target (``plain``: ``target + alpha * R``)
    to ``out`` (target dtype), with the instruct tokenizer. The method says whether it is
    fed row chunks (streaming) or whole tensors; tensors without a residual, and those
    ``residual.modules`` does not select, pass through. ``layer_scale: cpt_change``: a
    streamed pre-pass over target and ``base_dir`` first sets each layer's alpha
    (:mod:`.layer_scale`)."""
    method = get_method(cfg.method)
    needs_base = method.needs_base(cfg)
    if needs_base and base_dir is None:
        key = "beta" if cfg.method == "plain" else "method"
        raise ResidualError(f"residual.{key}: {getattr(cfg, key)} needs --base (the residual's base model): "
                            f"the merge B + beta * (target - B) + alpha * R reads B")
    if cfg.layer_scale == "cpt_change" and base_dir is None:
        raise ResidualError("residual.layer_scale: cpt_change needs --base (the residual's base model) "
                            "to measure how much cpt changed each layer of the target")
    check_out_path(out, {"residual": residual_dir, "target": target_dir, "base": base_dir})
    manifest = read_manifest(residual_dir)
    residual, target = ShardedReader(residual_dir), ShardedReader(target_dir)
    check_compatible(residual, target, cfg, residual_dir, target_dir)
    vocab = check_tokenizers(residual_dir, target_dir, vocab_rows(residual.specs), vocab_rows(target.specs))
    selected = _selection(cfg, target, target_dir)
    base = ShardedReader(base_dir) if base_dir is not None else None
    base_matches = check_base(manifest, residual_dir, base_dir, cfg) if base is not None else None
    if cfg.layer_scale == "cpt_change" and not base_matches:
        raise ResidualError(f"residual.layer_scale: cpt_change measures cpt's change against the residual's "
                            f"base, and --base {base_dir} is not it (residual.base_mismatch: warn)")
    if needs_base and not base_matches:
        raise ResidualError(f"residual.method: {cfg.method} (beta {cfg.beta}) merges onto the residual's base, "
                            f"and --base {base_dir} is not it (residual.base_mismatch: warn)")
    specs = list(target.specs.values())
    has_r = {s.name: s.name in residual.specs and s.dtype.is_floating_point for s in specs}
    use_r = {n: has_r[n] and n in selected for n in has_r}  # the tensors the residual is added to
    with_base = {s.name: (has_r[s.name] and base is not None and s.name in base.specs
                          and base.specs[s.name].shape == s.shape) for s in specs}
    if needs_base:  # every tensor that gets the residual needs B of the target's shape
        lacking = [n for n in use_r if use_r[n] and not with_base[n]]
        if lacking:
            n = lacking[0]
            got = tuple(base.specs[n].shape) if n in base.specs else "no such tensor"
            raise ResidualError(f"--base {base_dir}: tensor {n} ({got}) does not match the target's "
                                f"{tuple(target.specs[n].shape)}, and residual.method: {cfg.method} "
                                f"(beta {cfg.beta}) computes B + beta * (target - B) on it"
                                + (f" (and {len(lacking) - 1} more)" if len(lacking) > 1 else ""))
    tensor_cfg: dict[str, ResidualConfig] = {}  # cpt_change: each tensor's cfg, alpha = its group's scale
    scaling = None
    if cfg.layer_scale == "cpt_change":
        names = [s.name for s in specs if use_r[s.name]]
        changes = relative_changes(target, base, names, target_dir, base_dir, cfg.check_finite)
        scale, c_ref = scales(changes, cfg.alpha, cfg.layer_scale_strength)
        by_group = {g: replace(cfg, alpha=a) for g, a in scale.items()}
        tensor_cfg = {n: by_group[layer_of(n)] for n in names}
        scaling = scale_report(changes, scale, c_ref, cfg.layer_scale_strength)

    def requests(name: str, i: int | None, j: int | None):
        spec = target.specs[name]
        r_req = None
        if use_r[name]:
            r_rows = residual.specs[name].shape[0] if spec.shape else 0
            if i is None:  # whole tensor; vocab: shared_rows reads the shared rows only
                r_req = ((residual, name, None, None) if not spec.shape or r_rows == spec.shape[0]
                         else (residual, name, 0, min(r_rows, spec.shape[0])))
            elif i < min(j, r_rows):
                r_req = (residual, name, i, min(j, r_rows))
        return (target, name, i, j), r_req, (base, name, i, j) if with_base[name] else None

    cosines: dict[str, list[float]] = {}
    drift: dict[str, list[float]] = {}  # layer -> [||T_l - B_l||^2, ||B_l||^2]
    with atomic_dir(out) as tmp:
        writer = ShardedWriter(tmp, specs, cfg.shard_bytes)
        scratch = Scratch()
        readers = [x for x in (target, residual, base) if x is not None]
        with stream(specs, requests, writer, readers, desc="apply residual", mode=method.mode) as steps:
            for chunk, (t, r, b) in steps:
                name, spec = chunk.name, target.specs[chunk.name]
                if chunk.first:
                    dot = nt = nb = nd = 0.0
                    tcfg = tensor_cfg.get(name, cfg)
                if with_base[name]:
                    tf, bf = t.float(), b.float()
                    dot += float((tf * bf).sum())
                    nt += float(tf.square().sum())
                    nb += float(bf.square().sum())
                    nd += float((tf - bf).square().sum())
                    del tf, bf
                if r is not None or (use_r[name] and needs_base):
                    if r is None:  # rows past the residual's (shared) vocabulary: B + beta * D
                        r = t[:0]
                    if method.mode == "tensors" and cfg.check_finite:  # a top-k or a drop mask
                        check_finite(name, r, residual_dir)  # would hide a NaN (or make one drop all)
                        if needs_base:  # D = T - B is trimmed or dropped too
                            check_finite(name, t, target_dir)
                            check_finite(name, b, base_dir)
                    new = method.merge(t, r, name, tcfg, scratch, b if needs_base else None)
                elif use_r[name]:  # rows past the residual's (shared) vocabulary
                    new = scratch.get("new", torch.float32, t.shape).copy_(t)
                else:
                    new = t
                out_t = scratch.cast("out", new, spec.dtype)
                # one cheap pass over what is written screens target and residual (NaN/Inf
                # propagate through t + alpha * R); alpha = 0 would hide a residual's NaN
                r_req = chunk.requests[1]
                if cfg.check_finite and (not finite_sum(out_t) or (r_req is not None and tcfg.alpha == 0)):
                    check_finite(name, t, target_dir)
                    if r_req is not None:  # re-read: the fast path summed into r's buffer
                        check_finite(name, residual.read(*r_req[1:]), residual_dir)
                    if needs_base and chunk.requests[2] is not None:  # re-read: a method may reuse b
                        check_finite(name, base.read(*chunk.requests[2][1:]), base_dir)
                    if not all_finite(out_t):
                        raise ResidualError(f"tensor {name}: the merge ({cfg.method}) overflows "
                                            f"{spec.dtype}")
                writer.write_part(out_t)
                del t, r, b, new, out_t
                if chunk.last and with_base[name]:
                    d = (nt ** 0.5) * (nb ** 0.5)
                    cosines.setdefault(layer_of(name), []).append(dot / d if d > 0 else 1.0)
                    acc = drift.setdefault(layer_of(name), [0.0, 0.0])
                    acc[0] += nd
                    acc[1] += nb
        writer.close()
        tokenizer = write_config_and_tokenizer(tmp, target_dir, residual_dir, manifest)
    for reader in readers:
        reader.close()
    report = {"alpha": cfg.alpha, "beta": cfg.beta, "method": cfg.method, "density": cfg.density,
              "tensors": len(specs), "residual_dtype": manifest["dtype"],
              "target_dtype": dtypes(specs), "output_dtype": dtypes(s for shard in writer.shards for s in shard),
              "residual_base_sha256": manifest["base"]["weights_sha256"],
              "base_matches": base_matches, "tokenizer": tokenizer,
              "vocab_rows": {"residual": vocab_rows(residual.specs), "target": vocab_rows(target.specs)},
              **vocab}
    if not is_all(cfg.modules):
        report["modules"] = {"entries": list(cfg.modules), "tensors_with_residual": sum(use_r.values()),
                             "passed_through": sum(has_r[n] and not use_r[n] for n in has_r)}
    if scaling is not None:
        report["layer_scale"] = scaling
    if cosines:
        per_layer = {k: sum(v) / len(v) for k, v in cosines.items()}
        report["target_vs_base_cosine"] = {"min": min(per_layer.values()),
                                           "mean": sum(per_layer.values()) / len(per_layer),
                                           "per_layer": per_layer}
    if drift:  # how far cpt moved each layer: ||T_l - B_l|| / ||B_l|| (inf where ||B_l|| = 0 < ||T_l - B_l||)
        rel = {k: relative_norm(dd, bb) for k, (dd, bb) in drift.items()}
        report["drift"] = {"mean": sum(rel.values()) / len(rel), "max": max(rel.values()), "per_layer": rel}
    return report
