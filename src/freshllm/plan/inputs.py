"""What a plan reads, once: the params sections it needs, the launch (accelerate config),
the model configs of every family, the DVC stages and cache; every problem reported at once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..config import ConfigError, load_section, lookup, read_params
from .arch import ModelInfo, family_models
from .commands import Call, calls, norm
from .dvcfiles import Cache, Stage, load_cache, load_stages
from .hardware import Gpu, Launch, load_launch


@dataclass
class Inputs:
    params_path: Path
    params: dict
    grid: Any
    launch: Launch
    gpu: Gpu
    mfu: float
    tokens_per_s: float | None
    cpt: Any
    pack: Any
    eval: Any
    residual_dtype: str
    max_articles: int
    families: dict[str, dict[str, ModelInfo]]
    family_cfgs: dict[str, Any]
    cache: Cache
    stages: list[Stage]
    notes: list[str] = field(default_factory=list)
    calls: dict[str, list[Call]] = field(default_factory=dict)   # stage name -> the modules its cmd runs
    made_by: dict[str, Stage] = field(default_factory=dict)      # output path -> the stage listing it

    def __post_init__(self):
        if self.calls:  # dataclasses.replace: already read
            return
        for stage in self.stages:
            self.calls[stage.name] = calls(stage.commands)
            for path, _ in stage.outs:
                self.made_by.setdefault(norm(path), stage)


def _section(problems: list[str], fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except ConfigError as exc:
        problems.extend(exc.problems)
        return None


def load_inputs(params_path: str | Path, dvc_yaml: str | Path, gpu: Gpu, mfu: float,
                tokens_per_s: float | None) -> Inputs:
    """Everything the plan reads -- the grid, ``cpt``, ``pack``, ``eval``, ``residual.dtype``,
    ``crawl.max_articles``, ``models.<family>``, the accelerate config, dvc.yaml and the cache
    config -- validated the way each stage validates it; one ``ConfigError`` lists every problem."""
    from ..cpt import CptConfig
    from ..eval import EvalConfig
    from ..models import ModelsConfig
    from ..names import load_grid
    from ..pack import PackConfig

    params_path = Path(params_path)
    params = read_params(params_path)
    stages = load_stages(dvc_yaml, params)  # first: the accelerate config path is relative to its root
    problems: list[str] = []
    grid = _section(problems, lambda: load_grid(params_path))
    cpt = _section(problems, lambda: load_section(CptConfig, "cpt", params_path))
    pack = _section(problems, lambda: load_section(PackConfig, "pack", params_path))
    ev = _section(problems, lambda: load_section(EvalConfig, "eval", params_path))
    # ResidualConfig imports torch (its dtype table); the plan needs only residual.dtype, checked
    # against the same choices
    res = _section(problems, lambda: lookup(params, "residual", str(params_path))) or {}
    residual_dtype = res.get("dtype", "float32") if isinstance(res, dict) else "float32"
    if residual_dtype not in ("float32", "bfloat16", "float16"):
        problems.append(f"residual.dtype: must be float32, bfloat16 or float16, got {residual_dtype!r}")
    # CrawlConfig pulls in the crawler (fundus); the plan needs only crawl.max_articles
    crawl = _section(problems, lambda: lookup(params, "crawl", str(params_path))) or {}
    max_articles = crawl.get("max_articles", 400) if isinstance(crawl, dict) else 400
    if isinstance(max_articles, bool) or not isinstance(max_articles, int) or max_articles <= 0:
        problems.append(f"crawl.max_articles: expected an integer > 0, got {max_articles!r}")
        max_articles = 400
    accel = params.get("accelerate_config")
    launch = None
    if not isinstance(accel, str):
        problems.append("accelerate_config: missing (a file in configs/accelerate/)")
    else:
        # a path relative to the repository root, where dvc runs the cpt command
        root = Path(dvc_yaml).resolve().parent
        launch = _section(problems, lambda: load_launch(accel if Path(accel).is_absolute() else root / accel))
    families, family_cfgs = {}, {}
    for fam in (grid.families if grid else []):
        family_cfgs[fam] = _section(problems, lambda: load_section(ModelsConfig, f"models.{fam}", params_path))
        if family_cfgs[fam] is not None:
            families[fam] = _section(problems, lambda: family_models(params_path, fam))
    if problems:
        raise ConfigError(str(params_path), problems)
    return Inputs(params_path, params, grid, launch, gpu, mfu, tokens_per_s, cpt, pack, ev,
                  residual_dtype, max_articles, families, family_cfgs,
                  load_cache(Path(dvc_yaml).resolve().parent), stages)
