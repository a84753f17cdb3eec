"""``python -m freshllm.plan``: what ``dvc repro`` will cost, before it runs.

Per DVC stage (named as ``dvc stage list`` names them) and in total: parameters (total and
non-embedding), tokens, FLOPs (6·N·D for cpt with the 12·L·d·seq attention refinement, 2·N per
token for eval, bytes moved for the residual stages), disk (every output in its dtype, the cpt
checkpoints, the DVC cache's link type), peak GPU memory per process for the accelerate config
(and whether it fits ``--gpu``) and wall time / GPU-hours (``--tokens-per-s``, or an MFU of the
GPU's peak); plus the paper's Appendix A comparison with the instruction fine-tuning the residual
avoids. Offline and in seconds: model facts come from config.json files only
(:mod:`.arch`).

Modules: :mod:`.formulas` (the arithmetic, pure), :mod:`.hardware` (GPU table, accelerate
config), :mod:`.arch` (model configs), :mod:`.dvcfiles` (dvc.yaml expansion, cache links),
:mod:`.commands` (the modules a stage's command runs: what its cost model is keyed by),
:mod:`.evalcost` (eval token estimates), :mod:`.stages` (the plan), :mod:`.render` (the table),
:mod:`.cli` (``main``).
"""

from .cli import main
from .stages import make_plan

__all__ = ["main", "make_plan"]
