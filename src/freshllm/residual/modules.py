"""``residual.modules``: which tensors ``apply`` adds the residual to.

Each entry is a named group or a regular expression searched (``re.search``) in the HF
tensor name; a tensor is selected when any entry matches it. Tensors not selected pass
through from the target unchanged (bit for bit). The groups, for the Llama / Qwen2 names
(``model.layers.<i>.self_attn.q_proj.weight``, ``model.layers.<i>.mlp.up_proj.weight``,
``model.layers.<i>.input_layernorm.weight``, ``model.norm.weight``, ...):
"""

from __future__ import annotations

import re

GROUPS: dict[str, str] = {
    "all": r"",                                               # every tensor (the default)
    "attention": r"\.self_attn\.",                            # q/k/v/o_proj weights (and Qwen2's q/k/v biases)
    "mlp": r"\.mlp\.",                                        # gate/up/down_proj
    "embeddings": r"(^|\.)embed_tokens\.",                    # input embeddings (tied: also the output layer)
    "norms": r"norm\.(weight|bias)$",                        # input/post_attention_layernorm, model.norm
    "lm_head": r"(^|\.)lm_head\.",                            # the untied output layer
}
__doc__ += "".join(f"\n* ``{k}``: ``{v or '(any name)'}``" for k, v in GROUPS.items())

DEFAULT = ("all",)


def entry_pattern(entry: str) -> re.Pattern:
    """The compiled pattern of a group name or a regex (``re.error`` for a bad regex)."""
    return re.compile(GROUPS.get(entry, entry))


def validate_modules(modules) -> list[str]:
    """Problems of a ``residual.modules`` list, each naming its entry (``modules[1]: ...``)."""
    errs = []
    if not modules:
        errs.append(f"modules: must list at least one group ({', '.join(GROUPS)}) or regex; "
                    "all: every tensor")
    for i, entry in enumerate(modules or []):
        if not isinstance(entry, str) or not entry:
            errs.append(f"modules[{i}]: expected a group ({', '.join(GROUPS)}) or a non-empty regex, "
                        f"got {entry!r}")
            continue
        if entry not in GROUPS:
            try:
                re.compile(entry)
            except re.error as exc:
                errs.append(f"modules[{i}]: {entry!r} is neither a group ({', '.join(GROUPS)}) "
                            f"nor a valid regex ({exc})")
    if "all" in (modules or []) and len(modules) > 1:
        errs.append(f"modules: 'all' already selects every tensor; drop the other entries "
                    f"or 'all' (got {list(modules)})")
    return errs


def is_all(modules) -> bool:
    return list(modules) == ["all"]


def select(modules, names) -> tuple[set[str], list[str]]:
    """``(selected tensor names, entries that match none of names)``."""
    names = list(names)
    if is_all(modules):
        return set(names), []
    selected: set[str] = set()
    unmatched = []
    for entry in modules:
        pat = entry_pattern(entry)
        hit = {n for n in names if pat.search(n)}
        if not hit:
            unmatched.append(entry)
        selected |= hit
    return selected, unmatched
