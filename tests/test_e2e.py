"""End to end: real `dvc repro` of the local news profile in a temporary git repository."""

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, copy_project, hermetic_env, profile_file, sh

pytestmark = pytest.mark.e2e

# model dir, eval metrics file, model name (<kind>[+<family>][@<budget>])
MODELS = [
    ("models/tiny/base", "metrics/eval/base-tiny.json", "base+tiny"),
    ("models/tiny/instruct", "metrics/eval/instruct-tiny.json", "instruct+tiny"),
    ("models/cpt/base-40K", "metrics/eval/cpt-base-40K.json", "cpt-base@40K"),
    ("models/cpt/instruct-40K", "metrics/eval/cpt-instruct-40K.json", "cpt-instruct@40K"),
    ("models/merged/tiny-40K", "metrics/eval/res-tiny-40K.json", "cpt-base-res+tiny@40K"),
]
TASKS = ["ifeval", "mmlu", "mmlu_pro", "gsm8k", "winogrande", "hellaswag", "arc_easy", "piqa",
         "truthfulqa_mc2"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    work = tmp / "repo"
    work.mkdir()
    env = hermetic_env(tmp)
    copy_project(work)
    # the local news profile: the paper's nine-task suite on local twins, ~2 minutes (the default
    # toy world runs through real dvc repro in test_toyworld.py, shrunken); 2 documents per task
    # (per subtask) instead of the profile's 8: every task is still scored, ~1.5 s less per eval stage;
    # the tiny pair pre-trains 60 steps and SFTs 40 (the profile: 200 / 150, 15 s of the ~90 s)
    params = yaml.safe_load(profile_file("local-news").read_text())
    params["eval"]["limit"] = 2
    params["models"]["tiny"]["pretrain"]["steps"] = 60
    params["models"]["tiny"]["sft"]["steps"] = 40
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(["git", "init", "-q", "-b", "main"], work, env)
    sh(["git", "add", "-A"], work, env)
    sh(["git", "commit", "-qm", "init"], work, env)
    out = sh(["dvc", "repro"], work, env, timeout=1500)
    return work, env, out


def test_repro_builds_every_output(repo):
    work, _, _ = repo
    for model_dir, _, _ in MODELS:
        assert (work / model_dir / "config.json").exists(), model_dir
        assert list((work / model_dir).glob("*.safetensors")), model_dir
    assert (work / "models/tiny/residual/manifest.json").exists()
    arts = (work / "data/articles.jsonl").read_text().splitlines()
    assert len(arts) >= 50
    assert {"url", "publisher", "title", "text", "published", "language"} <= set(json.loads(arts[0]))
    pack = json.loads((work / "metrics/pack/40K.json").read_text())
    assert pack["token_budget"] == 40_000 and 40_000 <= pack["train"]["tokens"] < 40_000 + 256
    for variant in ("base", "instruct"):
        m = json.loads((work / f"metrics/cpt/{variant}-40K.json").read_text())
        assert math.isfinite(m["final_loss"]) and math.isfinite(m["first_loss"])
        assert m["final_loss"] < m["first_loss"]
    # every torch stage records the threads it ran with (runtime.threads: auto)
    for rel in ("metrics/models/tiny.json", "metrics/cpt/base-40K.json", "metrics/residual/apply-tiny-40K.json",
                "metrics/residual/extract-tiny.json", "metrics/eval/res-tiny-40K.json"):
        rt = json.loads((work / rel).read_text())["runtime"]
        assert rt["threads_setting"] == "auto" and rt["threads"] >= 1 and rt["omp_wait"], rel
    for _, metrics_file, name in MODELS:
        ev = json.loads((work / metrics_file).read_text())
        assert ev["model"] == name
        assert set(TASKS) <= set(ev["results"]), (name, sorted(ev["results"]))
        for task in TASKS:
            vals = list(ev["results"][task].values())
            assert vals and all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in vals), (name, task)
    summary = json.loads((work / "metrics/summary.json").read_text())
    assert set(summary["avg"]) == {name for _, _, name in MODELS}
    assert all(math.isfinite(v) for v in summary["avg"].values())
    # what the update is for: bits per byte on the held-out fresh news and on known text
    text = json.loads((work / "metrics/eval_text.json").read_text())
    assert text["fresh"]["heldout_articles"] == pack["heldout"]["articles"] == pack["val"]["articles"] > 0
    for key in ("fresh_bpb", "known_bpb"):
        assert set(summary[key]) == {name for _, _, name in MODELS}
        assert all(math.isfinite(v) and v > 0 for v in summary[key].values())
    assert summary["fresh_bpb"]["cpt-base@40K"] < summary["fresh_bpb"]["base+tiny"]  # it learned the news
    compare = json.loads((work / "metrics/compare.json").read_text())
    assert compare["fresh_bpb"] == summary["fresh_bpb"] and compare["known_bpb"] == summary["known_bpb"]
    report = (work / "metrics/report.md").read_text()
    assert "Sub-Average" in report and "Average" in report and "| fresh news (held out) | bpb |" in report
    assert (work / "metrics/plots/residual.csv").exists()


def test_second_repro_is_a_noop_and_param_change_reruns_only_downstream(repo):
    work, env, _ = repo
    out = sh(["dvc", "repro"], work, env)
    assert "Running stage" not in out
    sh(["git", "add", "-A"], work, env)
    sh(["git", "commit", "-qm", "results"], work, env)
    out = sh(["dvc", "exp", "run", "-S", "cpt.lr.base=0.001"], work, env, timeout=1500)
    ran = set(re.findall(r"Running stage '([^']+)'", out))
    assert ran == {"cpt@base-40K", "residual-apply@tiny-40K", "eval-cpt@base-40K",
                   "eval-res@tiny-40K", "report", "figures"}, ran


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _digests(root: Path, rels) -> dict:
    import hashlib

    out = {}
    for rel in rels:
        for f in sorted((root / rel).rglob("*") if (root / rel).is_dir() else [root / rel]):
            if f.is_file() and f.name != ".gitignore":  # git's, not DVC's
                out[str(f.relative_to(root))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


@pytest.fixture()
def s3(tmp_path):
    """A real S3 protocol server (moto) on loopback, stopped after the test."""
    import time
    import urllib.request

    port = _free_port()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1",
                             "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(url, timeout=1)
                break
            except Exception:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto_server did not start")
                time.sleep(0.2)
        creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
        import boto3

        boto3.client("s3", endpoint_url=url, **{k.lower(): v for k, v in creds.items()
                                                if k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")},
                     region_name="us-east-1").create_bucket(Bucket="freshllm")
        yield url, creds
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_s3_push_wipe_pull_restores_bit_exactly(repo, s3, tmp_path):
    work, env, _ = repo
    url, creds = s3
    env = {**env, **creds}
    # a per-clone remote (.dvc/config.local): it then applies to every revision, experiments
    # made before it included, and the endpoint never reaches git
    def add_remote(repo_dir):
        sh(["dvc", "remote", "add", "--local", "-f", "s3", "s3://freshllm/cache"], repo_dir, env)
        sh(["dvc", "remote", "modify", "--local", "s3", "endpointurl", url], repo_dir, env)

    add_remote(work)
    tracked = ["models", "data/packed", "data/articles.jsonl", "metrics"]
    before = _digests(work, tracked)
    assert any(k.startswith("models/merged/tiny-40K/") for k in before)
    sh(["dvc", "push", "-r", "s3"], work, env, timeout=600)
    shutil.rmtree(work / ".dvc/cache")
    (work / "data/articles.jsonl").unlink()
    for rel in ("models", "data/packed"):  # every DVC output; git's .gitignore files stay
        for p in sorted((work / rel).rglob("*")):
            if p.is_dir() and any(p.glob("*.json")):
                shutil.rmtree(p)
    assert not any((work / "models").rglob("*.safetensors"))
    sh(["dvc", "pull", "-r", "s3"], work, env, timeout=600)
    after = _digests(work, tracked)
    assert after == before
    assert "Running stage" not in sh(["dvc", "repro"], work, env)

    # experiments travel too: push the experiment of the previous test to a git remote +
    # the S3 remote, pull it into a fresh clone and restore its models bit-exactly
    exps = sh(["dvc", "exp", "list", "--name-only"], work, env).split()
    assert exps, "no experiment to push"
    bare = tmp_path / "origin.git"
    sh(["git", "init", "-q", "--bare", "-b", "main", str(bare)], work, env)
    sh(["git", "remote", "add", "origin", str(bare)], work, env)
    sh(["git", "add", "-A"], work, env)
    sh(["git", "commit", "-qm", "s3 remote", "--allow-empty"], work, env)
    sh(["git", "push", "-q", "origin", "main"], work, env)
    sh(["dvc", "exp", "push", "-r", "s3", "origin", exps[0]], work, env, timeout=600)
    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(bare), str(clone)], tmp_path, env)
    add_remote(clone)
    sh(["dvc", "exp", "pull", "-r", "s3", "origin", exps[0]], clone, env, timeout=600)
    sh(["dvc", "exp", "apply", exps[0]], clone, env)
    sh(["dvc", "pull", "-r", "s3"], clone, env, timeout=600)
    sh(["dvc", "exp", "apply", exps[0]], work, env)
    assert _digests(clone, ["models/cpt/base-40K", "metrics/eval"]) == \
        _digests(work, ["models/cpt/base-40K", "metrics/eval"])
