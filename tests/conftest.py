"""Shared fixtures: tiny random Llama models and a trained tokenizer, built in seconds."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

for _k, _v in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "DVC_NO_ANALYTICS": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(_k, _v)

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


# pytest-xdist (scripts/test.sh: --dist loadscope --no-loadscope-reorder) hands whole modules to
# workers in collection order: the long end-to-end modules go first, longest first, so that none
# of them starts near the end of the run while the other workers sit idle.
LONGEST_FIRST = ("test_updates.py", "test_rehearsal.py", "test_e2e.py", "test_toyworld.py",
                 "test_real.py", "test_chain_modes.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a module keeps its order


# --- temporary DVC projects (end-to-end tests) ---

def hermetic_env(tmp: Path) -> dict:
    env = dict(os.environ)
    env.update({
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
        "DVC_SITE_CACHE_DIR": str(tmp / "dvc-site"), "DVC_GLOBAL_CONFIG_DIR": str(tmp / "dvc-global"),
        "DVC_SYSTEM_CONFIG_DIR": str(tmp / "dvc-system"), "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "t@example.com",
    })
    env.pop("PYTHONPATH", None)
    return env


def copy_project(dst: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split("\n")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file() and not rel.startswith(("models/", "data/", "metrics/", "dvclive/")):
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)


_EXPANDED: dict[str, Path] = {}


def profile_file(name: str) -> Path:
    """Profile ``name`` expanded to its complete params file (``python -m freshllm.profile use``),
    in a temporary directory, once per test session: what a test reads or copies as params.yaml."""
    import tempfile

    from freshllm.profile import use

    if name not in _EXPANDED:
        out = Path(tempfile.mkdtemp(prefix=f"profile-{name}-")) / f"{name}.yaml"
        _EXPANDED[name] = use(name, out, ROOT / "profiles")
    return _EXPANDED[name]


def all_profiles() -> list[Path]:
    """params.yaml and every profile, expanded."""
    return [ROOT / "params.yaml", *(profile_file(p.stem) for p in sorted((ROOT / "profiles").glob("*.yaml")))]


def safetensors_dtypes(model_dir: Path) -> dict[str, str]:
    """``{tensor name: safetensors dtype ("BF16", ...)}`` over a model directory's shards, read
    with the project's strict header parser; fails when the directory holds no weights."""
    from freshllm.io.st_format import DTYPE_TO_ST, parse_header

    out: dict[str, str] = {}
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        out.update({name: DTYPE_TO_ST[e.spec.dtype] for name, e in parse_header(f)[1].items()})
    assert out, f"no safetensors weights in {model_dir}"
    return out


def sh(cmd, cwd, env, timeout=900):
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                         shell=isinstance(cmd, str))
    assert res.returncode == 0, f"{cmd} failed:\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    return res.stdout + res.stderr


@pytest.fixture(scope="module")
def private_nltk_data(tmp_path_factory):
    """IFEval's punkt_tab goes to a test directory, not the user's cache (modules that
    score IFEval opt in with ``pytestmark = pytest.mark.usefixtures("private_nltk_data")``)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NLTK_DATA", str(tmp_path_factory.mktemp("nltk_data")))
        yield


def make_models_config(**over):
    from freshllm.config import build_config
    from freshllm.models import ModelsConfig

    base = dict(seed=0, vocab_size=400, hidden_size=32, intermediate_size=64, num_layers=2,
                num_heads=4, num_kv_heads=2, max_position_embeddings=512, pretrain_docs=200,
                sft_examples=40, seq_len=64, pretrain={"lr": 3e-3, "steps": 5, "batch_size": 4},
                sft={"lr": 1e-3, "steps": 5, "batch_size": 4})
    base.update(over)
    return build_config(ModelsConfig, base, "models")


@pytest.fixture(scope="session")
def tokenizers_pair():
    """(base_tokenizer, instruct_tokenizer) trained on generated text."""
    from freshllm.synthetic.corpus import chat_examples, d1_documents
    from freshllm.models import train_tokenizer

    texts = d1_documents(0, 200) + [m["content"] for c in chat_examples(0, 40) for m in c]
    return train_tokenizer(texts, 400)


def random_llama(tokenizer, seed: int = 0, tie: bool = True, hidden: int = 32, layers: int = 2,
                 dtype=None):
    import torch

    from freshllm.models import build_llama

    model = build_llama(make_models_config(seed=seed, hidden_size=hidden, num_layers=layers,
                                           tie_word_embeddings=tie), tokenizer)
    if dtype is not None:
        model = model.to(dtype)
    model.eval()
    torch.manual_seed(0)
    return model


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory, tokenizers_pair):
    """Saved HF dirs: base (random init) and instruct (base + a perturbation), fp32, tied."""
    import torch

    from freshllm.io.hf import save_model_dir

    base_tok, inst_tok = tokenizers_pair
    root = tmp_path_factory.mktemp("pair")
    base = random_llama(base_tok, seed=1)
    save_model_dir(base, base_tok, root / "base")
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in base.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=gen))
    save_model_dir(base, inst_tok, root / "instruct")
    return root / "base", root / "instruct"


SHRINK = "hidden=64,layers=2,intermediate=128,heads=4,kv_heads=2"


@pytest.fixture(scope="session")
def standin_pairs(tmp_path_factory):
    """Shrunk stand-ins of hub snapshots with the real tokenizers, vocab sizes, tying, biases,
    chat templates and generation configs: ``standin_pairs("meta-llama/Meta-Llama-3-8B")`` ->
    ``{"base": dir, "instruct": dir}`` (built once per session; tokenizers cached)."""
    from freshllm.standins import build_family_pair

    root = tmp_path_factory.mktemp("standins")
    built: dict[str, dict] = {}

    def get(base_model_id: str) -> dict:
        if base_model_id not in built:
            built[base_model_id] = build_family_pair(base_model_id, root, shrink=SHRINK)
        return built[base_model_id]
    return get
@pytest.fixture(scope="session")
def tiny_bf16(tmp_path_factory, tokenizers_pair, tiny_pair):
    """Saved HF dirs: the tiny base in bfloat16 (config.json dtype bfloat16), and the very
    same weights upcast to float32 (exact), saved as a float32 model."""
    import torch

    from freshllm.io.hf import load_causal_lm, save_model_dir

    root = tmp_path_factory.mktemp("bf16")
    model = load_causal_lm(tiny_pair[0], dtype=torch.bfloat16)
    save_model_dir(model, tokenizers_pair[0], root / "bf16")
    save_model_dir(model.float(), tokenizers_pair[0], root / "bf16-values-fp32")
    return root / "bf16", root / "bf16-values-fp32"


def dvc_stage_names(tmp_path: Path, profile: Path) -> list[str]:
    """The stage names `dvc stage list` expands from dvc.yaml with ``profile`` as params.yaml
    (in ``tmp_path``, a DVC repo without git)."""
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    shutil.copy(profile, tmp_path / "params.yaml")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True, env=env)
    return subprocess.run(["dvc", "stage", "list", "--name-only"], cwd=tmp_path, check=True,
                          capture_output=True, text=True, env=env).stdout.split()
