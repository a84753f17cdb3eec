"""Stages ``residual-extract`` and ``residual-apply``: instruction residuals.

* ``extract``: ``R = instruct - base`` over every weight, stored as a versioned artifact
  (safetensors shards + ``manifest.json`` + the instruct model's tokenizer and chat
  template under ``tokenizer/``).
* ``apply``: ``new = target + alpha * R`` on a continued-pretrained base, another version
  of the family, or a model derived from the same base; ``method`` picks a merge method
  from the registry in :mod:`.methods` (``plain``, ``ties``, ``dare``); ``modules`` limits
  it to some tensors (:mod:`.modules`; the rest pass through), ``layer_scale: cpt_change``
  gives each layer less where cpt changed it more (:mod:`.layer_scale`, a streamed pre-pass
  over target and ``--base``).

Both stream tensor by tensor (never a whole model in memory); arithmetic is float32 and
the result is cast to the target's dtype. Before writing anything (:mod:`.checks`)
``apply`` refuses an output path that is or holds an input, a ``--base`` that is not the
residual's (weight hash; ``residual.base_mismatch``), a tensor name or shape mismatch
(naming the tensor and both shapes; vocabulary rows: ``residual.vocab``) and a target
tokenizer with other tokens at the same ids (added special tokens alone: a warning).

Merges: ``beta`` weighs cpt's change D = target - base, so a merge is ``B + beta * D +
alpha * R`` (``plain`` at beta 1: ``target + alpha * R``); the two-vector methods
``ties_dr``, ``dare_dr``, ``dare_ties_dr``, ``magmax`` and ``breadcrumbs_dr`` combine D
and R (they need ``--base``); :mod:`.merges` reads the ``merges:`` grid of named settings.
With ``--base`` the report has ``drift``: ``||T_l - B_l|| / ||B_l||`` per layer.

Modules: :mod:`.config` (the params section), :mod:`.chunks` (the streaming loop both
stages share), :mod:`.extract`, :mod:`.apply`, :mod:`.checks`, :mod:`.artifact` (manifest
and tokenizer files), :mod:`.methods` (one module per merge method), :mod:`.modules` and
:mod:`.layer_scale` (the two apply options above); the CLI is
``__main__`` (a user error: one line ``residual: <message>``, exit status 1).
"""

from .apply import apply, check_compatible
from .artifact import FORMAT, MANIFEST, weights_hash
from .config import ResidualConfig, ResidualError
from .extract import extract
from .merges import load_merges, overlay
from .methods import METHODS, MergeMethod, get_method

__all__ = ["FORMAT", "MANIFEST", "METHODS", "MergeMethod", "ResidualConfig", "ResidualError",
           "apply", "check_compatible", "extract", "get_method", "load_merges", "overlay",
           "weights_hash"]
