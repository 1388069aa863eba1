"""Crash-safe checkpoints of JAX pytrees: one file, verified before it is used.

``save_checkpoint`` writes a pytree of arrays (params, optax state, typed PRNG keys,
step counters; ``None`` and empty tuples inside are fine) and a JSON metadata dict
to one file, atomically: a crash at any moment leaves either the previous
checkpoint or the new one at ``path``, never a half-written file. A process killed
while writing leaves its temporary file beside ``path``
(``.NAME.WRITER.PID.XXXXXXXX.tmp``, WRITER naming its host); the next save of
``path`` removes it: at once if its writer ran on this host and has exited, once it
is an hour old otherwise (never one that a running write may still rename).
``load_checkpoint`` checks the file's length and checksum, then checks that its
structure matches a ``template`` (e.g. freshly initialised params and optimizer
state) before rebuilding the tree, so a truncated or corrupt file, or one written
for a different model, raises ``CheckpointError`` instead of being used.

File format, version 1 (integers little-endian)::

    offset  size  field
         0     8  magic, b"RNNBCKPT"
         8     4  format version, uint32
        12     8  payload length in bytes, uint64
        20    32  SHA-256 of the payload
        52     n  payload: an uncompressed .npz written by numpy.savez

The payload holds one array per leaf, ``leaf_0``, ``leaf_1``, ... in
``jax.tree_util`` flattening order, and ``index``: the UTF-8 bytes (as uint8) of a
JSON object ``{"metadata": {...}, "leaves": [...]}`` with, per leaf, its key path
(``jax.tree_util.keystr``), shape, dtype, the dtype it is stored as, and the PRNG
implementation if it is a typed key. Dtypes numpy cannot name in an .npz
(``bfloat16``, ``float8_*``, ``int4``) are stored as a same-size unsigned-integer
view; typed keys as ``jax.random.key_data``. Nothing is pickled, and files are read
with ``allow_pickle=False``.

Example:
    >>> import os, tempfile
    >>> import jax.numpy as jnp
    >>> path = os.path.join(tempfile.mkdtemp(), "run", "step_10.ckpt")
    >>> state = {"w": jnp.arange(3.0), "step": jnp.int32(10)}
    >>> save_checkpoint(path, state, {"step": 10})
    >>> template = {"w": jnp.zeros(3), "step": jnp.int32(0)}
    >>> restored, metadata = load_checkpoint(path, template)
    >>> restored["w"].tolist(), metadata
    ([0.0, 1.0, 2.0], {'step': 10})
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import re
import struct
import tempfile
import threading
import time
import zipfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import liveness

MAGIC = b"RNNBCKPT"
VERSION = 1
# magic, version, payload length, SHA-256 of the payload.
_HEADER = struct.Struct("<8sIQ32s")
_INDEX = "index"
_LEAF_FIELDS = ("path", "shape", "dtype", "stored_dtype", "key_impl")
# How dtypes without an .npz name (bfloat16, float8_*, int4) are stored.
_UINT_OF_SIZE = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
# A temporary file this old is a killed write's, whoever wrote it: a write in
# progress is at most the time the file system takes to write and fsync one
# checkpoint, which is far shorter.
STALE_TEMPORARY_SECONDS = 3600.0
# This process's temporary files of writes in progress (threads may save at once).
_WRITING: set[str] = set()
_WRITING_LOCK = threading.Lock()


class CheckpointError(ValueError):
    """A checkpoint that must not be used: truncated, corrupt, not a checkpoint,
    or written for a different model. The message names the file."""


def save_checkpoint(
    path: str | os.PathLike, tree: Any, metadata: dict[str, Any]
) -> None:
    """Writes ``tree`` and ``metadata`` to ``path``, atomically.

    The file is written to a temporary file in the same directory, flushed and
    fsync'ed, then renamed onto ``path`` (``os.replace``), and the directory is
    fsync'ed where the platform allows it. Parent directories are created. Like
    any ``tempfile`` file, a new checkpoint is readable by its owner only (0o600).
    Temporary files of ``path`` left by killed writes are removed first.

    Args:
        path: where to write the checkpoint; an existing file is replaced.
        tree: a pytree whose leaves are JAX or numpy arrays (numeric, bool, or
            typed PRNG keys), NumPy scalars (their own dtype) or Python scalars
            (stored with JAX's default dtype).
        metadata: a JSON-serialisable dict, returned by ``load_checkpoint`` and
            ``peek_metadata`` as ``json`` reads it back (tuples become lists;
            NumPy and JAX scalars are stored as the plain numbers they hold).

    Raises:
        TypeError: if ``metadata`` is not a JSON-serialisable dict, or a leaf is
            not a numeric array.
        OSError: if the file cannot be written; ``path`` is then left unchanged.
    """
    path = os.fspath(path)
    if not isinstance(metadata, dict):
        raise TypeError(
            "`save_checkpoint`: `metadata` must be a dict, "
            f"got {type(metadata).__name__}"
        )
    payload = _encode(tree, metadata)
    header = _HEADER.pack(
        MAGIC, VERSION, len(payload), hashlib.sha256(payload).digest()
    )
    _remove_stale_temporaries(path)
    _atomic_write(path, header + payload)


def load_checkpoint(path: str | os.PathLike, template: Any) -> tuple[Any, dict]:
    """Reads a checkpoint written by ``save_checkpoint``, checked against ``template``.

    Args:
        path: the checkpoint file.
        template: a pytree with the structure of the saved one, e.g. freshly
            initialised params and optimizer state; its leaves may be arrays,
            ``jax.ShapeDtypeStruct``s or Python scalars. Only its structure, leaf
            key paths, shapes and dtypes are used.

    Returns:
        ``(tree, metadata)``: ``tree`` has ``template``'s treedef and the stored
        leaves as JAX arrays, bitwise equal to what was saved (typed PRNG keys are
        re-wrapped); ``metadata`` is the saved dict.

    Raises:
        FileNotFoundError: if there is no file at ``path``.
        CheckpointError: if the file is truncated, corrupt or not a checkpoint
            (its index, too, must describe its arrays as ``save_checkpoint``
            stores them), or its leaves differ from ``template``'s in number, key
            path, shape or dtype. The message names the file and the first
            mismatching leaf.
        ValueError: if a 64-bit leaf cannot be restored because
            ``jax_enable_x64`` is off.
    """
    path = os.fspath(path)
    index, arrays = _read_verified(path)
    flat, treedef = jax.tree_util.tree_flatten_with_path(template)
    expected = [(jax.tree_util.keystr(kp), *_template_spec(x)) for kp, x in flat]
    _check_structure(path, index["leaves"], expected)
    leaves = [
        _restore_leaf(entry, arrays[f"leaf_{i}"])
        for i, entry in enumerate(index["leaves"])
    ]
    return jax.tree_util.tree_unflatten(treedef, leaves), index["metadata"]


def peek_metadata(path: str | os.PathLike) -> dict:
    """The metadata of a checkpoint, verified like ``load_checkpoint`` does.

    Args:
        path: the checkpoint file.

    Returns:
        The ``metadata`` dict it was saved with.

    Raises:
        FileNotFoundError: if there is no file at ``path``.
        CheckpointError: if the file is truncated, corrupt or not a checkpoint.
    """
    index, _ = _read_verified(os.fspath(path))
    return index["metadata"]


# --- writing ----------------------------------------------------------------------


def _encode(tree: Any, metadata: dict) -> bytes:
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    arrays, leaves = {}, []
    for i, (key_path, leaf) in enumerate(flat):
        entry, arrays[f"leaf_{i}"] = _leaf_to_array(
            jax.tree_util.keystr(key_path), leaf
        )
        leaves.append(entry)
    try:
        index = json.dumps(
            {"metadata": metadata, "leaves": leaves}, default=_json_scalar
        )
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"`save_checkpoint`: `metadata` must be JSON-serialisable, got {err}"
        ) from err
    arrays[_INDEX] = np.frombuffer(index.encode("utf-8"), np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _json_scalar(value: Any) -> Any:
    """A NumPy or JAX scalar in metadata as the plain number it holds."""
    if isinstance(value, np.generic | np.ndarray | jax.Array) and np.ndim(value) == 0:
        return np.asarray(value).item()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _leaf_to_array(path: str, leaf: Any) -> tuple[dict, np.ndarray]:
    """The JSON description of one leaf and the numpy array stored for it."""
    if _is_key(leaf):
        data = np.asarray(jax.random.key_data(leaf))
        entry = _entry(path, leaf.shape, leaf.dtype, data.dtype)
        return entry | {"key_impl": str(jax.random.key_impl(leaf))}, data
    arr = _as_numpy(leaf, path)
    dtype = arr.dtype
    if dtype.kind in "biufc":
        stored = arr.astype(dtype.newbyteorder("="), copy=False)
        dtype = stored.dtype
    elif _is_ml_dtype(dtype):
        stored = arr.view(_UINT_OF_SIZE[dtype.itemsize])
    else:
        raise TypeError(
            f"`save_checkpoint`: leaf {path} of `tree` must be a numeric, bool or "
            f"PRNG-key array, got dtype {dtype}"
        )
    return _entry(path, arr.shape, dtype, stored.dtype), stored


def _entry(path: str, shape, dtype, stored_dtype) -> dict:
    return {
        "path": path,
        "shape": list(shape),
        "dtype": str(dtype),
        "stored_dtype": str(stored_dtype),
        "key_impl": None,
    }


def _atomic_write(path: str, data: bytes) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with _temporary(path) as (fd, tmp):
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            # Also on KeyboardInterrupt: never leave a stray temporary file.
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    _fsync_directory(directory)


def check_writable(path: str | os.PathLike) -> None:
    """Raises OSError unless a checkpoint can be written at ``path`` now: makes
    and deletes a temporary file in its (existing) folder, as a save would,
    after removing what killed writes of ``path`` left there (as a save does)."""
    path = os.fspath(path)
    _remove_stale_temporaries(path)
    with _temporary(path) as (fd, tmp):
        os.close(fd)
        os.unlink(tmp)


@contextlib.contextmanager
def _temporary(path: str):
    """A new temporary file beside ``path``, open for writing: ``(fd, name)``.

    Its name says whose it is, ``.NAME.WRITER.PID.XXXXXXXX.tmp``, and it is in
    ``_WRITING`` until the block ends, so that a save in another process or
    thread can tell a killed write's file from one still being written.
    """
    directory = os.path.dirname(os.path.abspath(path))
    prefix = f".{os.path.basename(path)}.{liveness.tag()}.{os.getpid()}."
    with _WRITING_LOCK:  # registered before a cleanup in another thread looks
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=".tmp")
        _WRITING.add(tmp)
    try:
        yield fd, tmp
    finally:
        with _WRITING_LOCK:
            _WRITING.discard(tmp)


def _remove_stale_temporaries(path: str) -> None:
    """Deletes the temporary files of ``path`` that no write will finish.

    Only files named as ``_temporary`` names ``path``'s (or as rnnbptt 0.1 named
    them, without WRITER and PID), and only certainly stale ones: written by a
    process of this host and pid namespace that has exited, or last modified
    over ``STALE_TEMPORARY_SECONDS`` ago. Best effort: never raises.
    """
    directory = os.path.dirname(os.path.abspath(path))
    pattern = re.compile(
        rf"\.{re.escape(os.path.basename(path))}\."
        r"(?:(?P<writer>[A-Za-z0-9-]+)\.(?P<pid>[0-9]+)\.)?[a-z0-9_]{8}\.tmp"
    )
    try:
        names = os.listdir(directory)
    except OSError:
        return
    with _WRITING_LOCK:
        for name in names:
            match = pattern.fullmatch(name)
            tmp = os.path.join(directory, name)
            if match is None or tmp in _WRITING:
                continue
            with contextlib.suppress(OSError):
                exited = _exited(match["writer"], int(match["pid"] or 0))
                age = time.time() - os.stat(tmp).st_mtime
                if exited or age > STALE_TEMPORARY_SECONDS:
                    os.unlink(tmp)


def _exited(writer: str | None, pid: int) -> bool:
    """Whether the process that wrote a temporary file named with ``writer``
    (:func:`rnnbptt.liveness.tag`) and ``pid`` has exited. This process's pid:
    yes, as its own writes in progress are in ``_WRITING``; the file is an
    earlier process's that had the same pid."""
    if writer != liveness.tag() or pid <= 0:
        return False
    if pid == os.getpid():
        return True
    return liveness.gone(liveness.writer() | {"pid": pid, "pid_started": None})


def _fsync_directory(directory: str) -> None:
    """Makes the rename durable; best effort (Windows cannot open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a directory
    finally:
        os.close(fd)


# --- reading ----------------------------------------------------------------------


def _read_verified(path: str) -> tuple[dict, dict[str, np.ndarray]]:
    """The index and arrays of the file, after every check that needs no template."""
    with open(path, "rb") as f:
        data = f.read()
    if data[: len(MAGIC)] != MAGIC[: len(data)]:
        raise CheckpointError(
            f"checkpoint {path} is not an rnnbptt checkpoint: it starts with "
            f"{data[: len(MAGIC)]!r}, expected {MAGIC!r}"
        )
    if len(data) < _HEADER.size:
        raise CheckpointError(
            f"checkpoint {path} is truncated: {len(data)} bytes, shorter than the "
            f"{_HEADER.size}-byte header"
        )
    _, version, length, digest = _HEADER.unpack_from(data)
    if version != VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version}; this rnnbptt reads "
            f"version {VERSION}"
        )
    payload = memoryview(data)[_HEADER.size :]
    if len(payload) < length:
        raise CheckpointError(
            f"checkpoint {path} is truncated: expected {length} bytes of payload, "
            f"found {len(payload)}"
        )
    if len(payload) > length:
        raise CheckpointError(
            f"checkpoint {path} is corrupt: {len(payload) - length} unexpected bytes "
            f"after the {length}-byte payload"
        )
    if hashlib.sha256(payload).digest() != digest:
        raise CheckpointError(
            f"checkpoint {path} is corrupt: checksum mismatch (the SHA-256 of its "
            "payload differs from the one in its header)"
        )
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        index = json.loads(arrays.pop(_INDEX).tobytes().decode("utf-8"))
        _check_index(index, arrays)
    except (ValueError, TypeError, KeyError, OSError, zipfile.BadZipFile) as err:
        raise CheckpointError(
            f"checkpoint {path} is corrupt: its checksum is right but its payload "
            f"cannot be decoded ({err}); it was not written by save_checkpoint"
        ) from err
    return index, arrays


def _check_index(index: Any, arrays: dict[str, np.ndarray]) -> None:
    """Raises ValueError unless the index describes exactly the stored arrays,
    each stored as ``save_checkpoint`` stores a leaf of its description."""
    if not (
        isinstance(index, dict)
        and isinstance(index.get("metadata"), dict)
        and isinstance(index.get("leaves"), list)
    ):
        raise ValueError("the index lacks `metadata` or `leaves`")
    leaves = index["leaves"]
    if sorted(arrays) != sorted(f"leaf_{i}" for i in range(len(leaves))):
        raise ValueError(f"{len(arrays)} arrays for {len(leaves)} leaves")
    for i, entry in enumerate(leaves):
        if not (
            isinstance(entry, dict)
            and set(entry) == set(_LEAF_FIELDS)
            and isinstance(entry["path"], str)
            and isinstance(entry["shape"], list)
            and all(type(n) is int and n >= 0 for n in entry["shape"])
        ):
            raise ValueError(f"malformed description of leaf {i}")
        arr = arrays[f"leaf_{i}"]
        shape, stored = _stored_as(entry)
        if entry["stored_dtype"] != str(stored):
            raise ValueError(
                f"leaf {entry['path']} of dtype {entry['dtype']} is described as "
                f"stored as {entry['stored_dtype']}, which save_checkpoint does not "
                f"do (it stores {stored})"
            )
        if (arr.shape, arr.dtype) != (shape, stored):
            raise ValueError(
                f"leaf {entry['path']} is described as "
                f"{_describe(entry['stored_dtype'], shape)} but stored as "
                f"{_describe(str(arr.dtype), arr.shape)}"
            )


def _stored_as(entry: dict) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype of the array ``save_checkpoint`` stores for a leaf
    of this description; ValueError for a dtype or PRNG implementation that it
    cannot have written."""
    shape, name = tuple(entry["shape"]), entry["dtype"]
    if entry["key_impl"] is not None:
        key_dtype, data = _key_spec(entry["key_impl"])
        if name != key_dtype:
            raise ValueError(
                f"leaf {entry['path']} is a {entry['key_impl']} key of dtype {name}"
            )
        return shape + data.shape, data.dtype
    try:
        dtype = jnp.dtype(name)
    except (TypeError, ValueError):
        dtype = None
    if dtype is not None and dtype.kind in "biufc":
        return shape, dtype.newbyteorder("=")
    if dtype is not None and _is_ml_dtype(dtype):
        return shape, np.dtype(_UINT_OF_SIZE[dtype.itemsize])
    raise ValueError(f"leaf {entry['path']} has dtype {name!r}, not a numeric dtype")


@functools.lru_cache(maxsize=16)
def _key_spec(impl: Any) -> tuple[str, jax.ShapeDtypeStruct]:
    """A typed key's dtype name and its key data's shape and dtype, for one key
    of PRNG implementation ``impl`` (traced, not run)."""
    if not isinstance(impl, str):
        raise ValueError(f"malformed PRNG implementation {impl!r}")
    try:
        key = jax.eval_shape(lambda: jax.random.key(0, impl=impl))
        data = jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0, impl=impl)))
    except (TypeError, ValueError) as err:
        raise ValueError(f"unknown PRNG implementation {impl!r}") from err
    return str(key.dtype), data


def _check_structure(path: str, stored: list[dict], expected: list[tuple]) -> None:
    problems = []
    if len(stored) != len(expected):
        problems.append(
            f"it holds {len(stored)} leaves, the template has {len(expected)}"
        )
    for entry, (t_path, t_shape, t_dtype) in zip(stored, expected, strict=False):
        s_shape, s_dtype = tuple(entry["shape"]), entry["dtype"]
        if entry["path"] != t_path:
            problems.append(
                f"the first mismatching leaf is {entry['path']} in the checkpoint "
                f"but {t_path} in the template"
            )
            break
        if (s_shape, s_dtype) != (t_shape, t_dtype):
            problems.append(
                f"leaf {t_path} is stored as {_describe(s_dtype, s_shape)}, the "
                f"template expects {_describe(t_dtype, t_shape)}"
            )
            break
    else:
        if len(stored) > len(expected):
            problems.append(f"the first extra leaf is {stored[len(expected)]['path']}")
        elif len(stored) < len(expected):
            problems.append(f"the first missing leaf is {expected[len(stored)][0]}")
    if problems:
        raise CheckpointError(
            f"checkpoint {path} was written for a different model: "
            f"{'; '.join(problems)}. Build `template` with the configuration of the "
            "run that saved it (peek_metadata shows the metadata saved with it)."
        )


def _restore_leaf(entry: dict, arr: np.ndarray) -> jax.Array:
    if entry["key_impl"] is not None:
        return jax.random.wrap_key_data(jnp.asarray(arr), impl=entry["key_impl"])
    dtype = jnp.dtype(entry["dtype"])
    if jax.dtypes.canonicalize_dtype(dtype) != dtype:
        raise ValueError(
            f"`load_checkpoint`: leaf {entry['path']} is stored as {dtype}, which "
            "JAX would round to 32 bits because `jax_enable_x64` is off; call "
            'jax.config.update("jax_enable_x64", True) before loading'
        )
    return jnp.asarray(arr.view(dtype) if arr.dtype != dtype else arr)


# --- leaves -----------------------------------------------------------------------


def _is_key(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array) and jnp.issubdtype(
        leaf.dtype, jax.dtypes.prng_key
    )


def _as_numpy(leaf: Any, path: str = "") -> np.ndarray:
    # A Python scalar gets JAX's default dtype, as jnp.asarray would give; a NumPy
    # scalar (np.float64 is a float too) keeps its own, like any array.
    if isinstance(leaf, bool | int | float | complex) and not isinstance(
        leaf, np.generic
    ):
        try:
            leaf = jnp.asarray(leaf)
        except OverflowError as err:
            raise TypeError(
                f"`save_checkpoint`: leaf {path} of `tree` is the Python int {leaf}, "
                "beyond JAX's default integer; store it as a NumPy array of a wide "
                "enough dtype (e.g. np.int64(...))"
            ) from err
    return np.asarray(leaf)


def _is_ml_dtype(dtype: np.dtype) -> bool:
    """bfloat16, float8_*, int4 ...: JAX dtypes that an .npz cannot name."""
    if dtype.kind != "V" or dtype.fields is not None or dtype.type is np.void:
        return False
    if dtype.itemsize not in _UINT_OF_SIZE:
        return False
    try:
        return jnp.dtype(str(dtype)) == dtype
    except TypeError:
        return False


def _template_spec(leaf: Any) -> tuple[tuple[int, ...], str]:
    """Shape and dtype name of a template leaf, as ``_leaf_to_array`` records them."""
    if not (hasattr(leaf, "shape") and hasattr(leaf, "dtype")):
        leaf = _as_numpy(leaf)  # Python scalars and other array-likes
    dtype = leaf.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "biufc":
        dtype = dtype.newbyteorder("=")
    return tuple(leaf.shape), str(dtype)


def _describe(dtype: str, shape: tuple[int, ...]) -> str:
    return f"{dtype}[{','.join(map(str, shape))}]"
