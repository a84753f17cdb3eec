"""dvc.yaml itself: the stage list DVC expands is the one the pipeline has always had (the file is
written with YAML anchors and stage `vars:` now; a refactor must not rename, add or drop a stage),
the shared bodies resolve to each stage's own paths, and the file stays short."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import ROOT, dvc_stage_names, profile_file

EXPECTED = json.loads((Path(__file__).parent / "dvc_stage_list.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("profile", sorted(EXPECTED))
def test_dvc_expands_the_same_stage_list(tmp_path, profile):
    """`dvc stage list` with the profile as params.yaml: the names and their order as recorded."""
    assert dvc_stage_names(tmp_path, profile_file(profile)) == EXPECTED[profile]


def _resolved(tmp_path: Path, profile: str) -> dict:
    """DVC's own resolution of every stage (name -> Stage) with ``profile`` as params.yaml."""
    import shutil
    import subprocess
    import sys

    from dvc.repo import Repo

    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    shutil.copy(profile_file(profile), tmp_path / "params.yaml")
    subprocess.run([str(Path(sys.executable).parent / "dvc"), "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    return {s.addressing.split(":")[-1]: s for s in Repo(str(tmp_path)).index.stages}


def test_shared_bodies_resolve_to_each_stages_own_model(tmp_path):
    """The chain's eval and cpt stages share one body each (anchors + `vars:`): each still reads
    and writes its own model, and u-cpt-instruct runs u-cpt-base's command for its variant, then
    the drift."""
    st = _resolved(tmp_path, "updates-toyworld")
    w = "2024-02"
    for stage, role, name in [("u-eval-cpt-base-res", "cpt-base-res", "cpt-base-res+toy"),
                              ("u-eval-cpt-instruct", "cpt-instruct", "cpt-instruct"),
                              ("u-eval-cpt-base", "cpt-base", "cpt-base"),
                              ("u-eval-current", "current", "cpt-base-res+current")]:
        s = st[f"{stage}@{w}"]
        assert f"--model models/updates/{w}/{role} --name {name}@{w} " in s.cmd, (stage, s.cmd)
        assert f"models/updates/{w}/{role}" in {d.def_path for d in s.deps}, stage
        assert {o.def_path for o in s.outs} == {f"data/updates/{w}/eval_samples/{role}.jsonl",
                                                f"metrics/updates/{w}/eval/{role}.json"}, stage
    cur = st[f"u-eval-current@{w}"]  # a copy of the candidate's or incumbent's record when it is that model
    reused = [f"metrics/updates/{w}/eval/{r}.json" for r in ("cpt-base-res", "incumbent")]
    assert cur.cmd.endswith("--reuse " + " ".join(reused))
    assert {*reused, *(f"data/updates/{w}/eval_samples/{r}.jsonl" for r in ("cpt-base-res", "incumbent"))} \
        <= {d.def_path for d in cur.deps}
    inc = st[f"u-eval-incumbent@{w}"]
    assert f"--model models/updates/2024-01/current --name cpt-base-res+incumbent@{w} " in inc.cmd
    assert "models/updates/2024-01/current" in {d.def_path for d in inc.deps}
    base, instruct = st[f"u-cpt-base@{w}"], st[f"u-cpt-instruct@{w}"]
    assert isinstance(base.cmd, str) and isinstance(instruct.cmd, list) and len(instruct.cmd) == 2
    assert instruct.cmd[0] == base.cmd.replace("cpt-base", "cpt-instruct").replace("--variant base", "--variant instruct")
    assert instruct.cmd[1].startswith("python -m freshllm.updates.drift --model models/updates/2024-02/cpt-instruct")
    params = {k for d in instruct.deps if getattr(d, "params", None) is not None for k in d.params}
    assert {"cpt.lr.instruct", "chain.cpt", "cpt.train"} <= params and "cpt.lr.base" not in params
    # u-crawl reuses crawl's code deps and params
    assert ({d.def_path for d in st[f"u-crawl@{w}"].deps} == {d.def_path for d in st["crawl"].deps})


def test_dvc_yaml_stays_short():
    lines = (ROOT / "dvc.yaml").read_text(encoding="utf-8").count("\n")
    assert lines <= 400, f"dvc.yaml has {lines} lines: share bodies (anchors, stage vars) instead of copying"
