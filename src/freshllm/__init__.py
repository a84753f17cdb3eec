"""freshllm: keep instruction-tuned LLMs up to date without instruction fine-tuning.

Continued pre-training of the base model on fresh news, then adding the instruction
residual ``R = instruct - base`` back (Jindal et al., "Balancing Continuous Pre-Training
and Instruction Fine-Tuning").
"""

import os as _os
import sys as _sys

__version__ = "0.1.0"


def _others_runnable(samples: int = 5, gap_s: float = 0.01) -> int:
    """How many runnable tasks besides this one the kernel counts (``procs_running`` of
    /proc/stat), the smallest of a few samples: a neighbour busy on the CPU counts in every
    sample, a short blip in none. 0 where /proc/stat cannot be read."""
    import time

    counts = []
    for i in range(samples):
        try:
            with open("/proc/stat", encoding="ascii") as fh:
                line = next((ln for ln in fh if ln.startswith("procs_running")), None)
        except OSError:
            return 0
        if line is None:
            return 0
        counts.append(int(line.split()[1]) - 1)  # this process is running while it reads
        if i + 1 < samples:
            time.sleep(gap_s)
    return max(0, min(counts))


def _set_omp_wait_policy() -> str:
    """Choose how torch's OpenMP threads wait at the end of a parallel region, before torch
    loads its OpenMP runtime (it reads the variables once, at load). Measured on a 2-core
    machine (README "Threads"): libgomp's default spin (300,000 rounds) makes 2-thread toy
    training 16x slower beside one busy process, because a thread spins on a core the
    neighbour needs while its partner waits to be scheduled; ``PASSIVE`` (sleep at once) is
    robust beside it but 1.5x slower when the machine is idle (a tiny model's regions are
    microseconds long). So: a short spin (``GOMP_SPINCOUNT=10000``, as fast as the default
    when idle, 5x better than it beside a neighbour) when no other task is runnable as the
    stage starts, ``PASSIVE`` when one is. ``FRESHLLM_OMP_WAIT``: ``auto`` (that), ``passive``,
    ``spin`` or ``torch`` (leave the runtime's default). A user's own ``OMP_WAIT_POLICY`` or
    ``GOMP_SPINCOUNT`` is kept. Which was chosen goes into every torch stage's metrics."""
    if "OMP_WAIT_POLICY" in _os.environ or "GOMP_SPINCOUNT" in _os.environ:
        return "user"
    if "torch" in _sys.modules:  # too late: the runtime has read its variables
        return "torch loaded first"
    mode = _os.environ.get("FRESHLLM_OMP_WAIT", "auto").strip().lower()
    if mode == "auto":
        mode = "passive" if _others_runnable() > 0 else "spin"
    if mode == "passive":
        _os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    elif mode == "spin":
        _os.environ["GOMP_SPINCOUNT"] = "10000"
    return mode


OMP_WAIT = _set_omp_wait_policy()
