"""The thread policy: ``runtime.threads`` and the OpenMP wait policy chosen before torch loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from freshllm.common import usable_cores, use_runtime
from freshllm.config import ConfigError, load_runtime


def _params(tmp_path, text: str):
    p = tmp_path / "params.yaml"
    p.write_text(text)
    return p


def test_runtime_section_is_validated_naming_every_bad_key(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_runtime(_params(tmp_path, "runtime: {threads: 0, thread: 2}\n"))
    msg = str(exc.value)
    assert "runtime.threads: must be auto or a positive integer, got 0" in msg
    assert "runtime.thread: unknown key" in msg
    with pytest.raises(ConfigError, match="runtime.threads: must be auto or a positive integer, got 'many'"):
        load_runtime(_params(tmp_path, "runtime: {threads: many}\n"))
    assert load_runtime(_params(tmp_path, "world: {}\n")).threads == "auto"  # absent: the default


@pytest.fixture
def restore_threads():
    import torch

    old = torch.get_num_threads()
    yield
    torch.set_num_threads(old)


def test_use_runtime_sets_and_records_the_threads(tmp_path, monkeypatch, restore_threads):
    import torch

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    rec = use_runtime(_params(tmp_path, "runtime: {threads: 1}\n"))
    assert torch.get_num_threads() == 1
    assert rec["threads"] == 1 and rec["threads_setting"] == 1 and rec["threads_from"] == "runtime.threads"
    assert rec["torch"] == torch.__version__ and "omp_wait" in rec
    json.dumps(rec)  # goes into metrics as is

    auto = _params(tmp_path, "runtime: {threads: auto}\n")
    rec = use_runtime(auto)
    assert rec["threads"] == usable_cores() == torch.get_num_threads()
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(usable_cores() + 5))  # more processes than cores
    assert use_runtime(auto)["threads"] == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # a launcher's or a side-by-side script's choice wins
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    rec = use_runtime(auto)
    assert rec["threads"] == 1 and rec["threads_from"] == "OMP_NUM_THREADS"


def test_usable_cores_follows_the_affinity():
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity on this platform")
    code = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "from freshllm.common import usable_cores; print(usable_cores())")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "1"


def _wait_choice(env_extra: dict, pre: str = "") -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "FRESHLLM_OMP_WAIT")}
    env.update(env_extra)
    code = (pre + "import os, json, freshllm; print(json.dumps({'mode': freshllm.OMP_WAIT, "
            "'policy': os.environ.get('OMP_WAIT_POLICY'), 'spin': os.environ.get('GOMP_SPINCOUNT')}))")
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def test_wait_policy_is_set_before_torch_loads_and_a_users_choice_is_kept():
    assert _wait_choice({"FRESHLLM_OMP_WAIT": "passive"}) == {"mode": "passive", "policy": "PASSIVE", "spin": None}
    assert _wait_choice({"FRESHLLM_OMP_WAIT": "spin"}) == {"mode": "spin", "policy": None, "spin": "10000"}
    assert _wait_choice({"FRESHLLM_OMP_WAIT": "torch"}) == {"mode": "torch", "policy": None, "spin": None}
    assert _wait_choice({"OMP_WAIT_POLICY": "ACTIVE"}) == {"mode": "user", "policy": "ACTIVE", "spin": None}
    # torch imported first: its OpenMP runtime has read the variables; nothing is set, and it says so
    assert _wait_choice({}, pre="import torch; ")["mode"] == "torch loaded first"


def test_auto_wait_policy_sleeps_beside_a_busy_process():
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        from freshllm import _others_runnable

        assert _others_runnable() >= 1
        assert _wait_choice({}) == {"mode": "passive", "policy": "PASSIVE", "spin": None}
    finally:
        busy.kill()
        busy.wait()
