"""What ``extract`` and ``apply`` check before they write anything: the output path
against the inputs, the ``--base`` of ``apply`` against the residual's recorded base, and
the target's vocabulary (embedding rows and tokenizer) against the residual's."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .artifact import MANIFEST, weights_hash
from .config import ResidualConfig, ResidualError

log = logging.getLogger(__name__)


def check_out_path(out: Path, inputs: dict[str, Path | None]) -> None:
    """Refuse an output that is, lies inside or contains an input (after resolving
    symlinks and ``..``): the rename into place would replace or delete that input.
    ``inputs`` maps the option name (``target``) to its path."""
    o = Path(out).resolve()
    for opt, path in inputs.items():
        if path is None:
            continue
        p = Path(path).resolve()
        how = ("is" if o == p else "is inside" if o.is_relative_to(p)
               else "contains" if p.is_relative_to(o) else None)
        if how:
            raise ResidualError(f"--out {out} {how} the input --{opt} {path}"
                                + (f" (both resolve to {p})" if how == "is" and Path(out) != Path(path) else "")
                                + ": the output must lie outside every input and hold none; choose another --out")


def check_base(manifest: dict, residual_dir: Path, base_dir: Path, cfg: ResidualConfig) -> bool:
    """Whether ``base_dir`` holds the weights the residual was extracted from (sha256 of
    the weight files, as recorded in the manifest). A mismatch is an error, or under
    ``residual.base_mismatch: warn`` a warning (the cosine report then compares the target
    with an unrelated model)."""
    want, got = manifest["base"]["weights_sha256"], weights_hash(base_dir)
    if got == want:
        return True
    msg = (f"--base {base_dir} is not the residual's base: its weights sha256 {got[:16]}... != "
           f"{want[:16]}... recorded in {residual_dir / MANIFEST} (base {manifest['base']['path']})")
    if cfg.base_mismatch == "error":
        raise ResidualError(msg + "; set residual.base_mismatch: warn to report against it anyway")
    log.warning("%s; residual.base_mismatch: warn, so the target-vs-base cosine report compares "
                "the target with a model the residual was not extracted from", msg)
    return False


def _read_vocab(tok_dir: Path) -> tuple[dict[int, str], dict[int, str]] | None:
    """``(regular tokens, added tokens)`` as id -> token from ``tokenizer.json``, or None
    where there is none."""
    path = tok_dir / "tokenizer.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        vocab = (data.get("model") or {}).get("vocab") or {}
        regular = ({i: piece for i, (piece, _score) in enumerate(vocab)} if isinstance(vocab, list)
                   else {i: t for t, i in vocab.items()})  # Unigram: [piece, score]; BPE/WordPiece: token -> id
        added = {t["id"]: t["content"] for t in data.get("added_tokens") or []}
    except (json.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ResidualError(f"{path}: not a readable tokenizer.json ({exc})") from exc
    return regular, added


def _first_difference(a: dict[int, str], b: dict[int, str]) -> str:
    i = min(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return f"id {i}: {a.get(i)!r} vs {b.get(i)!r}"


def check_tokenizers(residual_dir: Path, target_dir: Path, residual_rows: int | None,
                     target_rows: int | None) -> dict:
    """Compare the residual's (instruct) tokenizer with the target's, where the embedding
    rows are shared (all of them; the leading ones under ``vocab: shared_rows``).

    Different regular tokens at a shared id: refused (row ``i`` means another token). Only
    the added (special) tokens differ (Qwen2 vs Qwen2.5, LLaMA 3 vs 3.1): a warning, since
    the merged model gets the residual's tokenizer. A residual token id with no embedding
    row in the target: refused. Returns what the report records."""
    tok_dir = residual_dir / "tokenizer"
    r, t = _read_vocab(tok_dir), _read_vocab(target_dir)
    if r is None or t is None:
        log.warning("cannot compare the tokenizers: no tokenizer.json in %s", tok_dir if r is None else target_dir)
        return {"tokenizer_compared": False}
    (r_reg, r_add), (t_reg, t_add) = r, t
    shared = min(residual_rows, target_rows) if residual_rows and target_rows else None
    r_in, t_in = ({i: v for i, v in d.items() if shared is None or i < shared} for d in (r_reg, t_reg))
    if r_in != t_in:
        n = sum(1 for k in set(r_in) | set(t_in) if r_in.get(k) != t_in.get(k))
        raise ResidualError(f"tokenizer {target_dir / 'tokenizer.json'} of the target and the residual's "
                            f"{tok_dir / 'tokenizer.json'} differ in {n} regular tokens ("
                            f"{_first_difference(r_in, t_in)}): the embedding rows mean other tokens")
    top = max([*r_reg, *r_add], default=-1)
    if target_rows is not None and top >= target_rows:
        raise ResidualError(f"the residual's tokenizer {tok_dir} has token id {top}, but the target "
                            f"{target_dir} has only {target_rows} embedding rows")
    if r_add != t_add:
        log.warning("the tokenizers share their regular tokens but differ in added special tokens "
                    "(residual %s: %d, target %s: %d; %s): the merged model gets the residual's "
                    "(instruct) tokenizer from %s", tok_dir, len(r_add), target_dir, len(t_add),
                    _first_difference(r_add, t_add), tok_dir)
    return {"tokenizer_compared": True, "added_tokens_differ": r_add != t_add,
            "tokenizer_size": {"residual": len(r_reg | r_add), "target": len(t_reg | t_add)}}


VOCAB_TENSORS = ("embed_tokens.weight", "lm_head.weight", "wte.weight", "embed_out.weight")


def is_vocab(name: str) -> bool:
    return name.endswith(VOCAB_TENSORS)


def vocab_rows(specs: dict) -> int | None:
    """Rows of the (first) embedding / output tensor: the vocabulary size the arithmetic sees."""
    return next((s.shape[0] for n, s in sorted(specs.items()) if is_vocab(n) and s.shape), None)


def one_line(head: str, problems: list[str], most: int = 5) -> str:
    more = f"; and {len(problems) - most} more" if len(problems) > most else ""
    return f"{head}: " + "; ".join(problems[:most]) + more


def check_compatible(residual, target, cfg: ResidualConfig, residual_dir: Path, target_dir: Path) -> None:
    """Every residual tensor must exist in the target (ShardedReaders) with the same
    shape (vocab rows may differ under ``vocab: shared_rows``), and every floating target
    tensor must have a residual: nothing is skipped silently."""
    problems = []
    for name in sorted(set(residual.specs) | set(target.specs)):
        if name not in target.specs:
            problems.append(f"tensor {name}: in the residual but not in the target")
            continue
        if name not in residual.specs:
            if target.specs[name].dtype.is_floating_point:
                problems.append(f"tensor {name}: in the target but not in the residual "
                                "(e.g. tied vs untied embeddings)")
            continue
        rs, ts = residual.specs[name].shape, target.specs[name].shape
        if rs == ts:
            continue
        rows_only = is_vocab(name) and len(rs) == len(ts) and rs[1:] == ts[1:]
        if rows_only and cfg.vocab == "shared_rows":
            continue
        hint = (f" (vocabulary sizes differ: the residual has {rs[0]} rows, the target {ts[0]}; set "
                f"residual.vocab: shared_rows to apply it to the {min(rs[0], ts[0])} shared rows)"
                if rows_only else "")
        problems.append(f"tensor {name}: residual shape {tuple(rs)} != target shape {tuple(ts)}{hint}")
    if problems:
        raise ResidualError(one_line(f"residual {residual_dir} does not fit target {target_dir}", problems))
