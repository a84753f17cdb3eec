"""Plain-read safetensors I/O (freshllm.io.st_stream, st_format): reads equal safetensors' own,
headers are validated strictly (errors name the file and tensor), the writer's shards load."""

import json
import struct

import pytest
import torch
from freshllm.io.st_stream import ShardedReader


def state(model_dir):
    r = ShardedReader(model_dir)
    return {n: r.get(n) for n in r.names()}


# ---------------------------------------------------------------- plain-read safetensors I/O

def _write_sharded(d, tensors, per_shard=2):
    """Shards of ``per_shard`` tensors each, written by safetensors itself, + HF index."""
    from safetensors.torch import save_file

    d.mkdir(parents=True)
    names = list(tensors)
    groups = [names[k:k + per_shard] for k in range(0, len(names), per_shard)]
    weight_map = {}
    for g, group in enumerate(groups):
        fname = f"model-{g + 1:05d}-of-{len(groups):05d}.safetensors"
        save_file({n: tensors[n] for n in group}, d / fname, metadata={"format": "pt"})
        weight_map.update({n: fname for n in group})
    (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return d


def _mixed_tensors(dtype):
    gen = torch.Generator().manual_seed(0)
    return {"a.weight": torch.randn(37, 5, generator=gen).to(dtype),
            "b.bias": torch.randn(11, generator=gen).to(dtype),
            "c.scalar": torch.tensor(3.25, dtype=dtype),
            "d.empty": torch.zeros(0, 4, dtype=dtype),
            "e.ids": torch.arange(13, dtype=torch.int64),
            "f.mask": torch.tensor([True, False, True]),
            "g.big": torch.randn(64, 3, 2, generator=gen).to(dtype)}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float16])
def test_plain_reads_match_safetensors(tmp_path, dtype):
    from safetensors import safe_open

    from freshllm.io.st_stream import prefetch

    ref = _mixed_tensors(dtype)
    d = _write_sharded(tmp_path / "m", ref)
    r = ShardedReader(d)
    assert set(r.names()) == set(ref)
    for n, t in ref.items():
        got = r.get(n)
        assert got.dtype == t.dtype and got.shape == t.shape and torch.equal(got, t)
        with safe_open(str(r.file_of[n]), framework="pt") as f:  # its own loader agrees
            assert torch.equal(f.get_tensor(n), got)
    # row chunks of every size, into one reused buffer and fresh tensors
    buf = torch.empty(1 << 12, dtype=torch.uint8)
    for n, t in ref.items():
        if not t.shape:
            continue
        for step in (1, 2, 3, 7, max(1, t.shape[0])):
            parts = [r.rows(n, i, min(i + step, t.shape[0])) for i in range(0, t.shape[0], step)]
            assert torch.equal(torch.cat(parts) if parts else t[:0], t)
            for i in range(0, t.shape[0], step):
                j = min(i + step, t.shape[0])
                assert torch.equal(r.rows(n, i, j, out=buf), t[i:j])
    # prefetch: tiny chunks of two readers, read one step ahead in the background
    r2 = ShardedReader(d)
    steps = [((r, n, i, min(i + 2, t.shape[0])), None, (r2, n, i, min(i + 2, t.shape[0])))
             for n, t in ref.items() if t.shape for i in range(0, t.shape[0], 2)]
    steps.append(((r, "c.scalar", None, None), None, None))
    for (req, _, _), (a, none, b) in zip(steps, prefetch(steps)):
        _, n, i, j = req
        want = ref[n] if i is None else ref[n][i:j]
        assert none is None and torch.equal(a, want)
        assert b is None or torch.equal(b, want)
    with pytest.raises(ValueError, match="rows 30:40 out of range"):
        r.rows("a.weight", 30, 40)
    r.close()
    r2.close()


def _corrupt(path, header=None, raw_header=None, length=None, truncate=None, extra=b""):
    """Rewrite a safetensors file with a changed header / length field / data section."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    body = data[8 + n:]
    if header is not None:
        raw_header = json.dumps(header).encode()
    if raw_header is None:
        raw_header = data[8:8 + n]
    n_new = len(raw_header) if length is None else length
    blob = struct.pack("<Q", n_new) + raw_header + body + extra
    if truncate:
        blob = blob[:-truncate]
    path.write_bytes(blob)


@pytest.mark.parametrize("case, match", [
    ("json", r"corrupt JSON header"),
    ("length", r"header length \d+ out of range"),
    ("short", r"shorter than the 8-byte header length"),
    ("truncated", r"tensor w: data_offsets \[\d+, \d+\] run past the end of the file"),
    ("size", r"tensor w: data_offsets \[\d+, \d+\] span \d+ bytes, but F32 \[4, 3\] needs 48"),
    ("dtype", r"tensor w: unsupported dtype 'Q7'"),
    ("overlap", r"overlap the previous tensor"),
    ("gap", r"leave a gap"),
    ("trailing", r"bytes after the last tensor's data"),
    ("duplicate", r"duplicate key"),
    ("shape", r"tensor w: shape \[4, -3\] is not a list of non-negative integers"),
])
def test_header_validation_names_file_and_tensor(tmp_path, case, match):
    from safetensors.torch import save_file

    from freshllm.io.st_stream import SafetensorsFormatError, parse_header

    d = tmp_path / "m"
    d.mkdir()
    p = d / "model.safetensors"
    save_file({"v": torch.ones(2), "w": torch.ones(4, 3)}, p)
    hdr = json.loads(p.read_bytes()[8:8 + int.from_bytes(p.read_bytes()[:8], "little")])
    if case == "json":
        _corrupt(p, raw_header=b'{"w": {"dtype": "F32", ')
    elif case == "length":
        _corrupt(p, length=10**12)
    elif case == "short":
        p.write_bytes(b"\x05\x00")
    elif case == "truncated":
        _corrupt(p, truncate=8)
    elif case == "size":
        hdr["w"]["shape"] = [4, 3]
        hdr["w"]["data_offsets"][1] -= 4
        _corrupt(p, header=hdr)
    elif case == "dtype":
        hdr["w"]["dtype"] = "Q7"
        _corrupt(p, header=hdr)
    elif case == "overlap":
        hdr["v"]["data_offsets"] = [0, 8]
        hdr["w"]["data_offsets"] = [4, 52]
        _corrupt(p, header=hdr)
    elif case == "gap":
        hdr = {"v": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
               "w": {"dtype": "F32", "shape": [4, 3], "data_offsets": [8, 56]}}
        _corrupt(p, header=hdr)
    elif case == "trailing":
        _corrupt(p, extra=b"\0" * 16)
    elif case == "duplicate":
        raw = json.dumps(hdr).encode()
        _corrupt(p, raw_header=raw[:-1] + b', "v": ' + json.dumps(hdr["v"]).encode() + b"}")
    elif case == "shape":
        hdr["w"]["shape"] = [4, -3]
        _corrupt(p, header=hdr)
    with pytest.raises(SafetensorsFormatError, match=match) as exc:
        parse_header(p)
    assert str(p) in str(exc.value)
    with pytest.raises(SafetensorsFormatError, match=match):  # and through the reader
        ShardedReader(d)


def test_writer_output_loads_with_safetensors(tmp_path):
    from safetensors import safe_open

    from freshllm.io.st_stream import ShardedWriter, TensorSpec

    ref = _mixed_tensors(torch.bfloat16)
    specs = [TensorSpec(n, t.dtype, tuple(t.shape)) for n, t in ref.items()]
    w = ShardedWriter(tmp_path / "o", specs, max_shard_bytes=200, metadata={"k": "v"})
    for n, t in ref.items():
        w.begin(n)
        for i in range(0, max(1, t.shape[0] if t.shape else 1), 5):  # row chunks
            w.write_part(t[i:i + 5] if t.shape else t)
        w.end()
    w.close()
    index = json.loads((tmp_path / "o/model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    for n, t in ref.items():
        with safe_open(str(tmp_path / "o" / index["weight_map"][n]), framework="pt") as f:
            assert f.metadata() == {"format": "pt", "k": "v"}
            assert torch.equal(f.get_tensor(n), t)
    assert set(state(tmp_path / "o")) == set(ref)


