"""Checkpoints round-trip bitwise, are written atomically, and are never used when
truncated, corrupt, foreign or written for a different model."""

import hashlib
import io
import json
import os
import signal
import struct
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rnnbptt
from rnnbptt.checkpoint import (
    MAGIC,
    CheckpointError,
    check_writable,
    load_checkpoint,
    peek_metadata,
    save_checkpoint,
)

HEADER_SIZE = 52  # magic, version, payload length, SHA-256: see the module docstring
METADATA = {"step": 120, "lr": 1e-3, "cell": "lstm", "sizes": [3, 4], "done": False}


ADAM = optax.adam(1e-3)


@jax.jit
def _adam_update(grads, opt_state, params):
    """One Adam update, as one compiled program (eagerly, each of its operations
    at each shape compiles one)."""
    updates, opt_state = ADAM.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def make_state(seed, hidden=4, trained=True):
    """Params, Adam state (after one update if ``trained``), a key and odd dtypes.

    The parameters (the shapes and dtype of an LSTM's), gradients and floats are
    drawn in NumPy: jax.random and the cell's initialisation would compile their
    samplers for every shape."""
    rng = np.random.default_rng(seed)
    cell = rnnbptt.LSTM(3, hidden)
    shapes = jax.eval_shape(lambda k: cell.init(k, jnp.float64), jax.random.key(0))

    def draw(leaf):
        return jnp.asarray(rng.standard_normal(leaf.shape), leaf.dtype)

    params = jax.tree.map(draw, shapes)
    opt_state = ADAM.init(params)
    if trained:
        params, opt_state = _adam_update(jax.tree.map(draw, params), opt_state, params)
    x = rng.standard_normal(5).astype(np.float32)
    # NaN, -0.0 and inf check the round trip is bitwise, not merely numerically equal.
    x[:3] = [np.nan, -0.0, np.inf]
    x = jnp.asarray(x)
    return {
        "params": params,
        "opt_state": opt_state,
        "key": jax.random.key(seed + 3),
        "keys": jax.random.split(jax.random.key(seed), 2),
        "half": x.astype(jnp.bfloat16),
        "f32": x,
        "counts": jnp.arange(seed, seed + 4, dtype=jnp.uint32),
        "step": jnp.int32(7 * seed + 1),
        "mask": jnp.array([True, False, seed % 2 == 0]),
        "nothing": None,
        "empty": (),
    }


def bits(x):
    """The raw bytes of a leaf (a typed key's by its key data)."""
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    return np.asarray(x).tobytes()


def assert_bitwise_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert isinstance(x, jax.Array)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert bits(x) == bits(y)


@pytest.fixture(scope="module")
def state():
    return make_state(seed=0)


@pytest.fixture(scope="module")
def template():
    return make_state(seed=1, trained=False)


@pytest.fixture
def ckpt(tmp_path, state):
    path = tmp_path / "run" / "step_120.ckpt"
    save_checkpoint(path, state, METADATA)
    return path


def test_round_trip_is_bitwise(ckpt, state, template):
    restored, metadata = load_checkpoint(ckpt, template)
    assert_bitwise_equal(restored, state)
    # The values come from the file, not from the template.
    assert bits(restored["key"]) != bits(template["key"])
    assert int(restored["opt_state"][0].count) == 1
    assert restored["half"].dtype == jnp.bfloat16
    assert jax.random.key_impl(restored["key"]) == jax.random.key_impl(state["key"])
    assert metadata == METADATA


def test_template_of_shape_dtype_structs(ckpt, state):
    restored, _ = load_checkpoint(ckpt, jax.eval_shape(lambda: state))
    assert_bitwise_equal(restored, state)


def test_metadata_round_trips_and_peeks(ckpt):
    assert peek_metadata(ckpt) == METADATA
    assert peek_metadata(str(ckpt)) == METADATA


def test_python_scalars_and_numpy_leaves(tmp_path):
    tree = (1.5, 3, np.arange(4, dtype=np.int32), {"b": np.float64(-0.0)})
    save_checkpoint(tmp_path / "s.ckpt", tree, {})
    restored, _ = load_checkpoint(
        tmp_path / "s.ckpt", (0.0, 0, np.zeros(4, np.int32), {"b": 0.0})
    )
    assert [x.tolist() for x in jax.tree.leaves(restored)] == [
        1.5,
        3,
        [0, 1, 2, 3],
        -0.0,
    ]
    assert np.signbit(restored[3]["b"])


def test_numpy_scalars_keep_their_dtype_and_metadata_takes_them(tmp_path):
    path = tmp_path / "s.ckpt"
    tree = {"m": np.float64(0.15), "h": np.float16(0.1)}
    metadata = {"step": np.int64(3), "loss": jnp.float32(0.5), "n": np.array(2)}
    with jax.enable_x64(False):  # np.float64 is a Python float, but stays float64
        save_checkpoint(path, tree, metadata)
        with pytest.raises(ValueError, match="jax_enable_x64"):
            load_checkpoint(path, tree)
        with pytest.raises(TypeError, match="Python int 1099511627776"):
            save_checkpoint(tmp_path / "big.ckpt", {"big": 2**40}, {})
    restored, meta = load_checkpoint(path, tree)
    assert restored["m"].dtype == np.float64 and restored["m"] == np.float64(0.15)
    assert restored["h"].dtype == np.float16 and restored["h"] == np.float16(0.1)
    assert meta == {"step": 3, "loss": 0.5, "n": 2}
    assert type(meta["step"]) is int


def test_save_replaces_previous_checkpoint(ckpt, template):
    newer = make_state(seed=2)
    save_checkpoint(ckpt, newer, {"step": 240})
    restored, metadata = load_checkpoint(ckpt, template)
    assert_bitwise_equal(restored, newer)
    assert metadata == {"step": 240}
    assert os.listdir(ckpt.parent) == [ckpt.name]


def test_payload_is_a_plain_npz_without_pickle(ckpt, state):
    data = ckpt.read_bytes()
    assert data.startswith(MAGIC)
    with np.load(io.BytesIO(data[HEADER_SIZE:]), allow_pickle=False) as npz:
        index = json.loads(npz["index"].tobytes())
        flat = jax.tree_util.tree_flatten_with_path(state)[0]
        for i, (path, leaf) in enumerate(flat):
            assert index["leaves"][i]["path"] == jax.tree_util.keystr(path)
            assert npz[f"leaf_{i}"].tobytes() == bits(leaf)
    assert index["metadata"] == METADATA


CUTS = {
    "empty": lambda n: 0,
    "inside magic": lambda n: 5,
    "inside header": lambda n: 30,
    "half": lambda n: n // 2,
    "last byte": lambda n: n - 1,
}


@pytest.mark.parametrize("cut", list(CUTS))
def test_truncated_file_is_refused(ckpt, template, cut):
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: CUTS[cut](len(data))])
    for read in (lambda: load_checkpoint(ckpt, template), lambda: peek_metadata(ckpt)):
        with pytest.raises(CheckpointError, match="truncated") as info:
            read()
        assert str(ckpt) in str(info.value)


def test_half_truncated_file_says_how_much_is_missing(ckpt, template):
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    payload = len(data) - HEADER_SIZE
    found = len(data) // 2 - HEADER_SIZE
    with pytest.raises(
        CheckpointError, match=f"expected {payload} bytes of payload, found {found}"
    ):
        load_checkpoint(ckpt, template)


@pytest.mark.parametrize("where", [HEADER_SIZE, 0.5, -1])
def test_flipped_byte_is_refused(ckpt, template, where):
    data = bytearray(ckpt.read_bytes())
    i = int(len(data) * where) if isinstance(where, float) else where
    data[i] ^= 0x01
    ckpt.write_bytes(bytes(data))
    for read in (lambda: load_checkpoint(ckpt, template), lambda: peek_metadata(ckpt)):
        with pytest.raises(CheckpointError, match="corrupt: checksum mismatch") as info:
            read()
        assert str(ckpt) in str(info.value)


def test_flipped_checksum_byte_is_refused(ckpt, template):
    data = bytearray(ckpt.read_bytes())
    data[HEADER_SIZE - 1] ^= 0x80
    ckpt.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_checkpoint(ckpt, template)


def test_appended_bytes_are_refused(ckpt, template):
    ckpt.write_bytes(ckpt.read_bytes() + b"\0")
    with pytest.raises(CheckpointError, match="corrupt: 1 unexpected bytes"):
        load_checkpoint(ckpt, template)


def test_foreign_file_is_refused(tmp_path, state, template):
    # A plausible impostor: an .npz holding the very same arrays.
    path = tmp_path / "params.npz"
    np.savez(path, *[bits(x) for x in jax.tree.leaves(state)])
    with pytest.raises(CheckpointError, match="not an rnnbptt checkpoint") as info:
        load_checkpoint(path, template)
    assert str(path) in str(info.value)
    path.write_text("hello")
    with pytest.raises(CheckpointError, match="not an rnnbptt checkpoint"):
        peek_metadata(path)


def test_unknown_version_is_refused(ckpt):
    data = bytearray(ckpt.read_bytes())
    data[len(MAGIC)] = 9
    ckpt.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="format version 9"):
        peek_metadata(ckpt)


def test_template_of_other_shape_is_refused(ckpt):
    other = make_state(seed=1, hidden=5, trained=False)
    with pytest.raises(CheckpointError, match="written for a different model") as info:
        load_checkpoint(ckpt, other)
    msg = str(info.value)
    assert str(ckpt) in msg
    # Leaves are flattened in sorted dict-key order; 'opt_state' comes before 'params'.
    assert "leaf ['opt_state'][0].mu.w_ih" in msg
    assert "stored as float64[3,16], the template expects float64[3,20]" in msg


def test_template_of_other_dtype_is_refused(ckpt, template):
    other = dict(template, f32=template["f32"].astype(jnp.float16))
    with pytest.raises(
        CheckpointError, match=r"leaf \['f32'\] is stored as float32\[5\]"
    ):
        load_checkpoint(ckpt, other)
    other = dict(template, key=jax.random.key(0, impl="rbg"))
    with pytest.raises(
        CheckpointError, match=r"key<fry>\[\], the template expects key<rbg>"
    ):
        load_checkpoint(ckpt, other)


def test_template_of_other_structure_is_refused(ckpt, template):
    extra = dict(template, extra=jnp.zeros(2))
    with pytest.raises(
        CheckpointError, match=r"holds 17 leaves, the template has 18.*\['extra'\]"
    ):
        load_checkpoint(ckpt, extra)
    fewer = {k: v for k, v in template.items() if k != "step"}
    with pytest.raises(CheckpointError, match=r"first extra leaf is \['step'\]"):
        load_checkpoint(ckpt, fewer)
    renamed = dict(template, counters=template["counts"])
    del renamed["counts"]
    with pytest.raises(
        CheckpointError, match=r"\['counts'\] in the checkpoint but \['counters'\]"
    ):
        load_checkpoint(ckpt, renamed)


def _fail(*args, **kwargs):
    raise OSError("disk full")


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("target", "failure"), [("replace", _fail), ("fsync", _interrupt)]
)
def test_failed_save_keeps_previous_checkpoint(
    ckpt, state, template, monkeypatch, target, failure
):
    monkeypatch.setattr(os, target, failure)
    with pytest.raises((OSError, KeyboardInterrupt)):
        save_checkpoint(ckpt, make_state(seed=2), {"step": 240})
    monkeypatch.undo()
    assert os.listdir(ckpt.parent) == [ckpt.name]  # no temporary file left behind
    restored, metadata = load_checkpoint(ckpt, template)
    assert_bitwise_equal(restored, state)
    assert metadata == METADATA


def test_failed_first_save_leaves_nothing(tmp_path, state, monkeypatch):
    monkeypatch.setattr(os, "replace", _fail)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "a.ckpt", state, {})
    assert os.listdir(tmp_path) == []


def test_missing_file(tmp_path, template):
    path = tmp_path / "nope.ckpt"
    with pytest.raises(FileNotFoundError, match=r"nope\.ckpt"):
        load_checkpoint(path, template)
    with pytest.raises(FileNotFoundError, match=r"nope\.ckpt"):
        peek_metadata(path)


def test_bad_arguments_are_refused_before_writing(tmp_path, state):
    with pytest.raises(TypeError, match="`save_checkpoint`: `metadata` must be a dict"):
        save_checkpoint(tmp_path / "a.ckpt", state, [1])
    with pytest.raises(TypeError, match="JSON-serialisable"):
        save_checkpoint(tmp_path / "a.ckpt", state, {"f": print})
    with pytest.raises(TypeError, match=r"leaf \['name'\] of `tree`"):
        save_checkpoint(tmp_path / "a.ckpt", {"name": np.array("lstm")}, {})
    assert os.listdir(tmp_path) == []


def test_64_bit_leaf_without_x64_is_refused(tmp_path):
    path = tmp_path / "a.ckpt"
    save_checkpoint(path, {"w": np.arange(3.0)}, {})
    with jax.enable_x64(False), pytest.raises(ValueError, match="jax_enable_x64"):
        load_checkpoint(path, {"w": np.zeros(3)})


# --- what a killed write leaves ---------------------------------------------------

KILLED_WRITE = """
import os, signal, sys
import numpy as np
from rnnbptt.checkpoint import save_checkpoint
os.replace = lambda *args: os.kill(os.getpid(), signal.SIGKILL)  # before the rename
save_checkpoint(sys.argv[1], {"w": np.zeros(3)}, {})
"""


def _killed_write(path):
    """The temporary file that a process killed while saving ``path`` leaves."""
    before = set(os.listdir(path.parent))
    run = subprocess.run([sys.executable, "-c", KILLED_WRITE, str(path)], timeout=120)
    assert run.returncode == -signal.SIGKILL
    (left,) = set(os.listdir(path.parent)) - before
    return path.parent / left


def test_the_next_save_removes_what_a_killed_write_left(ckpt, state, template):
    left = _killed_write(ckpt)
    assert left.name.startswith(f".{ckpt.name}.") and left.name.endswith(".tmp")
    # the previous checkpoint is untouched
    assert_bitwise_equal(load_checkpoint(ckpt, template)[0], state)
    newer = make_state(seed=2)
    save_checkpoint(ckpt, newer, {"step": 240})
    assert os.listdir(ckpt.parent) == [ckpt.name]
    assert_bitwise_equal(load_checkpoint(ckpt, template)[0], newer)


def test_checking_a_path_before_training_removes_them_too(tmp_path):
    """fit tries the checkpoint's folder before training (check_writable): it
    removes what a killed write left, and leaves nothing of its own."""
    path = tmp_path / "run.ckpt"
    _killed_write(path)
    check_writable(path)
    assert os.listdir(tmp_path) == []


def test_only_temporaries_certainly_stale_are_removed(tmp_path):
    path = tmp_path / "run.ckpt"
    dead = _killed_write(path)
    writer, dead_pid, _, _ = dead.name[len(".run.ckpt.") :].split(".")
    elsewhere = "another-host-0123abcd"  # a writer on another host: pids say nothing
    names = {
        # the writer's process has exited
        dead.name: False,
        # under this process's pid, not being written: an earlier process's
        f".run.ckpt.{writer}.{os.getpid()}.aaaaaaaa.tmp": False,
        # its writer runs: a write in progress
        f".run.ckpt.{writer}.{os.getppid()}.bbbbbbbb.tmp": True,
        # fresh, of a writer elsewhere or of rnnbptt 0.1 (no writer): may be
        # in progress; over an hour old: not
        f".run.ckpt.{elsewhere}.{dead_pid}.cccccccc.tmp": True,
        f".run.ckpt.{elsewhere}.{dead_pid}.dddddddd.tmp": "old",
        ".run.ckpt.eeeeeeee.tmp": True,
        ".run.ckpt.ffffffff.tmp": "old",
        # not this checkpoint's temporaries
        f".other.ckpt.{writer}.{dead_pid}.gggggggg.tmp": True,
        f".run.ckpt.x.{writer}.{dead_pid}.hhhhhhhh.tmp": True,
        "run.ckpt.tmp": True,
        f".run.ckpt.{writer}.{dead_pid}.iiiiiiii.tmp.keep": True,
    }
    two_hours_ago = time.time() - 7200
    for name, kept in names.items():
        (tmp_path / name).touch()
        if kept == "old":
            os.utime(tmp_path / name, (two_hours_ago, two_hours_ago))
    save_checkpoint(path, {"w": np.zeros(3)}, {})
    left = sorted(os.listdir(tmp_path))
    assert left == sorted(
        [path.name] + [n for n, kept in names.items() if kept is True]
    )


def test_a_write_in_progress_in_this_process_is_kept(
    tmp_path, state, template, monkeypatch
):
    """A second save of the path while the first one is writing (as another
    thread would) leaves the first one's temporary file to it."""
    path = tmp_path / "run.ckpt"
    fsync, seen = os.fsync, []

    def fsync_and_save_again(fd):
        fsync(fd)
        if not seen:
            seen.append(os.listdir(tmp_path))
            save_checkpoint(path, make_state(seed=2), {"step": 240})

    monkeypatch.setattr(os, "fsync", fsync_and_save_again)
    save_checkpoint(path, state, METADATA)  # renamed after the second save's
    monkeypatch.undo()
    assert len(seen[0]) == 1 and seen[0][0].endswith(".tmp")
    assert os.listdir(tmp_path) == [path.name]
    restored, metadata = load_checkpoint(path, template)
    assert_bitwise_equal(restored, state)
    assert metadata == METADATA


# --- checksum-valid files with an index that does not describe their arrays -------


def _rewrite(path, edit):
    """``edit(index, arrays)`` applied to the checkpoint's payload, written back
    with a recomputed checksum: a file that passes every check of its bytes."""
    data = path.read_bytes()
    with np.load(io.BytesIO(data[HEADER_SIZE:]), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    index = json.loads(arrays.pop("index").tobytes())
    edit(index["leaves"], arrays)
    arrays["index"] = np.frombuffer(json.dumps(index).encode(), np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    payload = buffer.getvalue()
    digest = hashlib.sha256(payload).digest()
    path.write_bytes(struct.pack("<8sIQ32s", MAGIC, 1, len(payload), digest) + payload)


def _as_uint8(leaves, arrays):  # float32[3] stored as uint8[3], and said so
    leaves[1]["stored_dtype"] = "uint8"
    arrays["leaf_1"] = arrays["leaf_1"].astype(np.uint8)


def _as_uint32_view(leaves, arrays):  # float32 stored as bfloat16 would be
    leaves[1]["stored_dtype"] = "uint32"
    arrays["leaf_1"] = arrays["leaf_1"].view(np.uint32)


def _key_data_of_shape_5(leaves, arrays):
    arrays["leaf_0"] = np.arange(5, dtype=np.uint32)


def _unknown_key_impl(leaves, arrays):
    leaves[0]["key_impl"] = "threefry3x33"


def _key_dtype_without_impl(leaves, arrays):
    leaves[0]["key_impl"] = None


def _shape_of_text(leaves, arrays):
    leaves[1]["shape"] = ["3"]


@pytest.mark.parametrize(
    "edit",
    [
        _as_uint8,
        _as_uint32_view,
        _key_data_of_shape_5,
        _unknown_key_impl,
        _key_dtype_without_impl,
        _shape_of_text,
    ],
)
def test_an_index_that_does_not_describe_the_arrays_is_refused(tmp_path, edit):
    path = tmp_path / "a.ckpt"
    tree = {"key": jax.random.key(0), "w": np.arange(3, dtype=np.float32)}
    save_checkpoint(path, tree, {})
    _rewrite(path, lambda leaves, arrays: None)  # rewriting alone changes nothing
    assert_bitwise_equal(
        load_checkpoint(path, tree)[0], jax.tree.map(jnp.asarray, tree)
    )
    _rewrite(path, edit)
    for read in (lambda: load_checkpoint(path, tree), lambda: peek_metadata(path)):
        with pytest.raises(CheckpointError, match="checksum is right") as info:
            read()
        assert str(path) in str(info.value)
