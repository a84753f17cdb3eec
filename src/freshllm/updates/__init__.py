"""Chained updates: keep a model current month after month (the pipeline's second mode).

Every window of the top-level ``updates`` (:mod:`.config`) is one update: its crawl
(``freshllm.crawl`` with the window's dates), its data (:mod:`.window`: deduplicated against
every earlier window, the held-out news of every window so far, the packed window and the
replay pool of the earlier windows), continued pre-training of the previous update's
cpt-base (Setting 2's chain) and cpt-instruct (Setting 1's, for comparison) with
``freshllm.cpt --section chain.cpt``, the residual applied to the new cpt-base
(``freshllm.residual apply``), a model card with the lineage of each (``freshllm.cards``),
the eval of every model and of the incumbent, and the promotion gate (:mod:`.gate`). The
chain-level stages: the ancestor node (:mod:`.root`), the promoted model ``models/current``
(:mod:`.gate`) and the report over update steps (:mod:`.report`).

    python -m freshllm.updates {root,window,promote,report,add} ...
    python -m freshllm.updates.gating ...   # the gate of one window

``add`` appends the next month to the params' ``updates`` (its dates, its parent).
"""

from .config import ANCESTOR, Chain, ChainConfig, PromoteConfig, Update, load_chain

__all__ = ["ANCESTOR", "Chain", "ChainConfig", "PromoteConfig", "Update", "load_chain"]
