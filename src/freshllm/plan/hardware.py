"""GPUs the plan knows, and the launch an accelerate config file describes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import ConfigError, load_yaml
from .formulas import Parallel

MiB = 2**20


@dataclass(frozen=True)
class Gpu:
    name: str
    memory: int                 # bytes: nvidia-smi's memory.total (what PyTorch gets is ~1 GiB less)
    bf16_tflops: float          # dense bf16 tensor-core peak, TFLOP/s (no sparsity)
    hbm_gb_s: float             # memory bandwidth, GB/s (decode-bound generation)

    @property
    def peak_flops(self) -> float:
        return self.bf16_tflops * 1e12


# NVIDIA data sheets (SXM parts for A100/H100/H200). Dense bf16 peaks: A100 312 (also the
# paper's Appendix A.1), H100/H200 989.4, L40S 362.05 TFLOP/s.
GPUS: dict[str, Gpu] = {g.name: g for g in (
    Gpu("A100-40GB", 40960 * MiB, 312.0, 1555.0),
    Gpu("A100-80GB", 81920 * MiB, 312.0, 2039.0),
    Gpu("H100-80GB", 81559 * MiB, 989.4, 3350.0),
    Gpu("H200-141GB", 143771 * MiB, 989.4, 4800.0),
    Gpu("L40S-48GB", 46068 * MiB, 362.05, 864.0),
)}
DEFAULT_GPU = "H100-80GB"


def get_gpu(name: str) -> Gpu:
    key = {k.lower(): k for k in GPUS}.get(name.lower())
    if key is None:
        raise ConfigError("--gpu", [f"unknown GPU {name!r}; known: {', '.join(GPUS)}"])
    return GPUS[key]


DISTRIBUTED = ("NO", "MULTI_GPU", "MULTI_CPU", "FSDP")
# accelerate's fsdp_sharding_strategy (FSDP1) by name or its 1-based number
_STRATEGIES = ["FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD", "HYBRID_SHARD_ZERO2"]


@dataclass(frozen=True)
class Launch:
    """The parts of an accelerate config (``configs/accelerate/*.yaml``) the cost depends on."""

    path: str
    distributed_type: str
    num_processes: int          # all processes of the run (accelerate counts them over machines)
    num_machines: int
    use_cpu: bool
    mixed_precision: str
    sharding: str = ""          # FSDP: FULL_SHARD | SHARD_GRAD_OP | NO_SHARD | HYBRID_SHARD...
    fsdp_version: int = 1
    fsdp_activation_checkpointing: bool = False

    @property
    def device(self) -> str:
        return "cpu" if self.use_cpu or self.distributed_type == "MULTI_CPU" else "gpu"

    @property
    def processes(self) -> int:
        return 1 if self.distributed_type == "NO" else self.num_processes

    def parallel(self) -> Parallel:
        n = self.processes
        if self.distributed_type == "FSDP":
            if self.sharding == "NO_SHARD":
                return Parallel("fsdp", n, 1, reshard_after_forward=False)
            per_node = max(1, n // max(1, self.num_machines))
            shard = per_node if self.sharding.startswith("HYBRID") else n
            reshard = self.sharding in ("FULL_SHARD", "HYBRID_SHARD")
            return Parallel("fsdp", n, shard, reshard_after_forward=reshard)
        if n > 1:
            return Parallel("ddp", n, 1)
        return Parallel("single", 1, 1)

    def describe(self) -> str:
        par = self.parallel()
        what = {"single": "1 process", "ddp": f"DDP x{par.processes}",
                "fsdp": f"FSDP {self.sharding} x{par.processes}"}[par.kind]
        return f"{what} on {self.device.upper()} ({Path(self.path).name})"


def load_launch(path: str | Path) -> Launch:
    """Read an accelerate config file; a ``ConfigError`` naming every problem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"accelerate config not found: {path} (params accelerate_config)")
    data = load_yaml(path.read_text(encoding="utf-8")) or {}
    problems = []
    if not isinstance(data, dict):
        raise ConfigError(str(path), ["top level must be a mapping"])
    dist = str(data.get("distributed_type", "NO"))
    if dist not in DISTRIBUTED:
        problems.append(f"distributed_type: the plan knows {', '.join(DISTRIBUTED)}, got {dist!r}")
    nproc, nmach = data.get("num_processes", 1), data.get("num_machines", 1)
    for key, value in (("num_processes", nproc), ("num_machines", nmach)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            problems.append(f"{key}: expected an integer >= 1, got {value!r}")
    mp = str(data.get("mixed_precision", "no")).lower()
    mp = "no" if mp in ("false", "none") else mp
    if mp not in ("no", "bf16", "fp16", "fp8"):
        problems.append(f"mixed_precision: expected no, bf16, fp16 or fp8, got {mp!r}")
    fsdp = data.get("fsdp_config") or {}
    if not isinstance(fsdp, dict):
        problems.append("fsdp_config: expected a mapping")
        fsdp = {}
    version = int(fsdp.get("fsdp_version", 1) or 1)
    sharding = ""
    if dist == "FSDP":
        if version >= 2:
            reshard = fsdp.get("fsdp_reshard_after_forward", True)
            sharding = "FULL_SHARD" if reshard in (True, "true", "FULL_SHARD") else "SHARD_GRAD_OP"
        else:
            raw = fsdp.get("fsdp_sharding_strategy", "FULL_SHARD")
            sharding = _STRATEGIES[int(raw) - 1] if str(raw).isdigit() and 1 <= int(raw) <= 5 \
                else str(raw).upper()
            if sharding not in _STRATEGIES:
                problems.append(f"fsdp_config.fsdp_sharding_strategy: one of {_STRATEGIES}, got {raw!r}")
    if problems:
        raise ConfigError(str(path), problems)
    return Launch(str(path), dist, nproc, nmach, bool(data.get("use_cpu", False)), mp, sharding, version,
                  bool(fsdp.get("fsdp_activation_checkpointing", False)))
