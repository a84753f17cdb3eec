"""Stages ``residual-extract`` and ``residual-apply``: instruction residuals.

* ``extract``: ``R = instruct - base`` over every weight, stored as a versioned artifact
  (safetensors shards + ``manifest.json`` + the instruct model's tokenizer and chat
  template under ``tokenizer/``).
* ``apply``: ``new = target + alpha * R`` on a continued-pretrained base, another version
  of the family, or a model derived from the same base; ``method`` picks a merge method
  from the registry in :mod:`.methods` (``plain``, ``ties``, ``dare``).

Both stream tensor by tensor (never a whole model in memory); arithmetic is float32 and
the result is cast to the target's dtype. ``apply`` checks every tensor name and shape
before writing anything and refuses on a mismatch, naming the tensor and both shapes.

Modules: :mod:`.config` (the params section), :mod:`.chunks` (the streaming loop both
stages share), :mod:`.extract`, :mod:`.apply`, :mod:`.artifact` (manifest and tokenizer
files), :mod:`.methods` (one module per merge method); the CLI is ``__main__``.
"""

from .apply import apply, check_compatible
from .artifact import FORMAT, MANIFEST, weights_hash
from .config import ResidualConfig, ResidualError
from .extract import extract
from .methods import METHODS, MergeMethod, get_method

__all__ = ["FORMAT", "MANIFEST", "METHODS", "MergeMethod", "ResidualConfig", "ResidualError",
           "apply", "check_compatible", "extract", "get_method", "weights_hash"]
