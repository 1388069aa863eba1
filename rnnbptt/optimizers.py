"""The optimizer ``fit`` trains with, and the learning rate its history reports.

A named optimizer (``"adam"``, ...) is made with its learning rate, an optax
transformation brings its own; gradient clipping is chained in front of either.
The same settings give the same transformation object, so that ``fit`` finds
its compiled train step again on a second call (``rnnbptt.train``).

``describe`` names an optax transformation or schedule by what it is made of,
for the checkpoint's record: ``optax.adam(0.05)`` is
``chain(update_fns=(scale_by_adam(b1=0.9, ..., nesterov=False)<code ...>,
scale(step_size=-0.05)<code ...>))<code ...>`` in any process (``<code ...>``:
a digest of each function's code), and ``optax.nadam(0.05)`` differs in
``nesterov=True``.
"""

from __future__ import annotations

import dis
import functools
import hashlib
import math
import types
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ._scalars import finite_number, real_number
from .parallel import local_copy

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adagrad", "nadam", "lion")
DEFAULT_LEARNING_RATE = 1e-3
# (step, opt_state) -> the learning rate of that step, for the history
Schedule = Callable[[int, Any], float]


def make_optimizer(optimizer, learning_rate, clip_norm) -> tuple[Any, Schedule]:
    """(optax transformation, ``(step, opt_state) ->`` learning rate for the history).

    A named optimizer is made with ``learning_rate`` (default 1e-3). An optax
    transformation brings its own, so ``learning_rate`` must then be None; the
    history reports it when the transformation exposes it
    (``optax.inject_hyperparams``) and NaN otherwise.
    """
    if isinstance(optimizer, optax.GradientTransformation):
        if learning_rate is not None:
            raise ValueError(
                "fit: `learning_rate` is for a named optimizer; an optax "
                "GradientTransformation has its own (leave learning_rate=None, or "
                "wrap the optimizer in optax.inject_hyperparams to see its rate in "
                f"the history), got learning_rate={learning_rate!r}"
            )
    elif isinstance(optimizer, str) and optimizer in OPTIMIZERS:
        if learning_rate is None:
            learning_rate = DEFAULT_LEARNING_RATE
        if not callable(learning_rate):  # else an optax schedule
            # a Python float, as the checkpoint records it: optax computes with
            # np.float32(0.5) otherwise than with 0.5 (typed, not weakly typed)
            learning_rate = finite_number(
                "fit", "learning_rate", learning_rate, above=0
            )
    else:
        raise ValueError(
            f"fit: `optimizer` must be one of {OPTIMIZERS} or an optax "
            f"GradientTransformation, got {optimizer!r}"
        )
    if clip_norm is not None:
        clip_norm = finite_number("fit", "clip_norm", clip_norm, above=0)
    try:
        return _made(optimizer, learning_rate, clip_norm)
    except TypeError:  # unhashable settings: made afresh
        return _made.__wrapped__(optimizer, learning_rate, clip_norm)


# typed: 0.1 and np.float64(0.1) are equal, but optax computes with each as given
@functools.lru_cache(maxsize=64, typed=True)
def _made(optimizer, learning_rate, clip_norm) -> tuple[Any, Schedule]:
    if isinstance(optimizer, str):
        tx = getattr(optax, optimizer)(learning_rate)
        if callable(learning_rate):
            schedule = lambda step, _: learning_rate(step)  # noqa: E731
        else:
            schedule = lambda *_: learning_rate  # noqa: E731
    else:
        tx, schedule = optimizer, lambda _, state: injected_learning_rate(state)
    if clip_norm is not None:
        tx = optax.chain(optax.clip_by_global_norm(clip_norm), tx)
    return tx, schedule


def optimizer_setting(optimizer) -> str:
    """The optimizer as a checkpoint records it: its name, or what ``describe``
    says of an optax transformation."""
    return optimizer if isinstance(optimizer, str) else describe(optimizer)


def learning_rate_setting(optimizer, learning_rate):
    """The learning rate as a checkpoint records it (None: the optimizer's own)."""
    if callable(learning_rate):
        return describe(learning_rate)
    if learning_rate is None and isinstance(optimizer, str):
        return DEFAULT_LEARNING_RATE
    return None if learning_rate is None else real_number(learning_rate)


def injected_learning_rate(opt_state) -> float:
    """The learning rate held by an ``optax.inject_hyperparams`` state, else NaN."""
    has_hyperparams = lambda node: hasattr(node, "hyperparams")  # noqa: E731
    for node in jax.tree.leaves(opt_state, is_leaf=has_hyperparams):
        if has_hyperparams(node) and "learning_rate" in node.hyperparams:
            return float(local_copy(node.hyperparams["learning_rate"]))
    return math.nan


# Deeper parts of a description are written "...": optax nests a few levels
# (chain, its wrapped transformations, their update functions, a schedule).
_DESCRIBE_DEPTH = 12


def describe(value: Any) -> str:
    """``value`` (an optax transformation, a schedule, any function or object)
    as the calls that made it, with their arguments.

    A function is written as the function that made it (``scale_by_adam`` for
    ``scale_by_adam.<locals>.update_fn``) with the values it closes over, its
    non-None defaults and the module-level values it reads (``LR`` in
    ``lambda s: LR * s``, ``args.lr`` of an object, ``CONFIG["lr"]`` of a dict;
    data and functions made with values, such as a schedule, but not modules,
    classes or plain functions), then ``<code DIGEST>``, a digest of its code
    (its bytecode, constants, signature and the names it reads, nested
    functions included): ``lambda s: 0.1`` and ``lambda s: 0.2`` differ, two
    lambdas of the same code do not. A callable object is written as its
    attributes (``__dict__`` or ``__slots__``) and the digest of its class's
    methods and class-level values. The code of plain functions it calls by
    name is not part of it, and the digest of one function differs between
    Python versions (their bytecode does). A transformation is written as its
    update function, with what only its init function holds. Numbers are
    written exactly and with their type, since JAX computes with each as
    given: a Python number as itself (``0.1``), a NumPy or JAX one as dtype
    and value (``np.float64(0.1)`` and a 0-d array of it as ``float64(0.1)``;
    a JAX number typed weakly, like a Python one, as ``weak float32(0.1)``);
    other arrays as dtype, shape and a digest. Nothing depends on the process
    (no ids, addresses or salted hashes), so an equal transformation built
    again describes the same, before or after its first use.

    What cannot be read is marked, never passed off as a description: an
    object of a C type without readable state, a random key or a traced array
    is ``<unrepresentable TYPE>``, and what lies deeper than
    ``_DESCRIBE_DEPTH`` levels or round a cycle is ``...``; a change there
    goes unnoticed.
    """
    return _describe(value, 0, frozenset())


def _describe(value: Any, depth: int, inside: frozenset) -> str:
    """``value`` described ``depth`` levels down, inside the values (ids) of
    ``inside``: "..." past ``_DESCRIBE_DEPTH`` or round a cycle, and
    ``<unrepresentable TYPE>`` where it cannot be described."""
    if depth > _DESCRIBE_DEPTH or id(value) in inside:
        return "..."
    inside = inside | {id(value)}
    part = lambda v: _describe(v, depth + 1, inside)  # noqa: E731
    try:
        return _describe_value(value, part)
    except Exception:  # e.g. a traced array, a key: nothing that can be compared
        return _unrepresentable(value)


def _describe_value(value: Any, part) -> str:
    if isinstance(value, np.generic | np.ndarray | jax.Array):
        return _describe_array(value)
    if value is None or isinstance(value, bool | int | float | complex | str | bytes):
        return repr(value)
    if _is_transformation(value):
        return _describe_transformation(value, part)
    if isinstance(value, tuple | list):
        items = ", ".join(map(part, value))
        if isinstance(value, list):
            return f"[{items}]"
        return f"({items}{',' if len(value) == 1 else ''})"
    if isinstance(value, set | frozenset):
        return f"{{{', '.join(sorted(map(part, value)))}}}"
    if isinstance(value, dict):
        items = sorted((part(k), part(v)) for k, v in value.items())
        return "{" + ", ".join(f"{k}: {v}" for k, v in items) + "}"
    if isinstance(value, functools.partial):
        args = [*map(part, value.args)]
        args += [f"{k}={part(v)}" for k, v in sorted(value.keywords.items())]
        return f"partial({', '.join([part(value.func), *args])})"
    if isinstance(value, types.FunctionType):
        return _describe_function(value, {}, part)
    if isinstance(value, types.MethodType):
        method = value.__func__
        code = _code_digest(method.__code__) if hasattr(method, "__code__") else ""
        return f"{part(value.__self__)}.{method.__name__}{code}"
    if hasattr(value, "__wrapped__") and callable(value):  # e.g. jax.jit(f)
        return part(value.__wrapped__)
    if isinstance(value, type | types.ModuleType | types.BuiltinFunctionType):
        return getattr(value, "__qualname__", value.__name__)
    if isinstance(value, np.dtype):
        return str(value)
    fields = _fields(value)
    if fields is None:
        return _unrepresentable(value)
    methods = _methods_digest(type(value), part) if callable(value) else ""
    return _call(type(value).__qualname__, fields, part) + methods


def _unrepresentable(value) -> str:
    """What an object ``describe`` cannot read is written as: its type, marked,
    so that a reader knows its state is not compared."""
    return f"<unrepresentable {type(value).__qualname__}>"


def _python_number(arr: np.ndarray):
    """The value of a 0-d array as a Python number (bfloat16's too)."""
    for kind, to_python in _PYTHON_KINDS:
        if jnp.issubdtype(arr.dtype, kind):
            return to_python(arr)
    return arr.item()


# NumPy's dtypes and JAX's (bfloat16) as the Python type of their values.
_PYTHON_KINDS = (
    (np.bool_, bool),
    (jnp.integer, int),
    (jnp.floating, float),
    (jnp.complexfloating, complex),
)


def _describe_array(value) -> str:
    """A NumPy or JAX number as ``float32(0.5)`` (``weak float32(0.5)`` if JAX
    types it weakly); a larger array as dtype, shape and digest."""
    if jax.dtypes.issubdtype(value.dtype, jax.dtypes.extended):
        raise TypeError(f"a {value.dtype} array has no values to describe")
    arr = np.asarray(value)
    if arr.ndim == 0:
        weak = "weak " if getattr(value, "weak_type", False) else ""
        return f"{weak}{arr.dtype}({_python_number(arr)!r})"
    digest = hashlib.sha256(np.ascontiguousarray(arr).reshape(-1).view(np.uint8))
    return f"{arr.dtype}{list(arr.shape)} sha256 {digest.hexdigest()[:12]}"


def _is_transformation(value) -> bool:
    return isinstance(value, tuple) and all(
        callable(getattr(value, name, None)) for name in ("init", "update")
    )


# Wrappers that change a transformation's signature only.
_TRANSPARENT = frozenset({"with_extra_args_support"})


def _describe_transformation(tx, part) -> str:
    """The update function, and the values only the init function holds (the
    initial accumulator of ``adagrad``, the hyper-parameters that
    ``inject_hyperparams`` keeps in the state)."""
    if not isinstance(tx.update, types.FunctionType):
        return part(tx.update)
    init = _arguments(tx.init) if isinstance(tx.init, types.FunctionType) else {}
    only_init = {k: v for k, v in init.items() if not _is_code(v)}
    return _describe_function(tx.update, only_init, part)


def _describe_function(fn: types.FunctionType, more: dict, part) -> str:
    """``fn``'s maker with ``fn``'s arguments and those of ``more`` it lacks;
    a transparent wrapper as what it wraps."""
    arguments, maker = _arguments(fn), _maker(fn)
    if maker in _TRANSPARENT and list(arguments) == ["tx"]:
        return part(arguments["tx"])
    more = {k: v for k, v in more.items() if k not in arguments}
    more |= {k: v for k, v in _globals_read(fn).items() if k not in arguments}
    return _call(maker, {**arguments, **more}, part) + _code_digest(fn.__code__)


def _globals_read(fn: types.FunctionType) -> dict:
    """The module-level data ``fn`` (or a function nested in it) reads by
    name: what is neither a module nor callable (a class, a function). Of an
    object, only the attributes the code names (``args.lr``), and of a dict
    the keys it names (``CONFIG["lr"]``), where it names any: a schedule that
    reads ``args.lr`` does not change when ``args.epochs`` does."""
    names, constants, codes = set(), set(), [fn.__code__]
    while codes:
        code = codes.pop()
        names.update(code.co_names)
        codes += [c for c in code.co_consts if isinstance(c, types.CodeType)]
        constants.update(c for c in code.co_consts if isinstance(c, str))
    scope, found = fn.__globals__, {}
    for name in sorted(names & scope.keys()):
        value = scope[name]
        if isinstance(value, types.ModuleType) or (
            callable(value) and not _made_with_values(value)
        ):
            continue
        if isinstance(value, dict):
            keys = sorted(constants & {k for k in value if isinstance(k, str)})
            parts = {f"{name}[{k!r}]": value[k] for k in keys}
        elif hasattr(value, "__dict__") and not _is_transformation(value):
            attributes = sorted(names & vars(value).keys())
            parts = {f"{name}.{a}": vars(value)[a] for a in attributes}
        else:
            parts = {}
        found |= parts or {name: value}
    return found


def _made_with_values(fn) -> bool:
    """A function that carries values of its own (a closure, a partial, such as
    a module-level ``optax.cosine_decay_schedule(...)``), not a plain one."""
    closure = isinstance(fn, types.FunctionType) and fn.__closure__
    return bool(closure) or isinstance(fn, functools.partial)


def _methods_digest(cls: type, part) -> str:
    """``<code DIGEST>`` of the functions a class and its bases (but
    ``object``) define, static and class methods too, and the class-level
    values they may read, so that a callable object's ``__call__`` counts."""
    texts = []
    for klass in cls.__mro__[:-1]:
        for name, attr in sorted(vars(klass).items()):
            attr = getattr(attr, "__func__", attr)  # staticmethod, classmethod
            if isinstance(attr, types.FunctionType):
                texts.append(f"{name}: {_code_text(attr.__code__)}")
            elif _class_data(name, attr):
                texts.append(f"{name} = {part(attr)}")
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:12]
    return f"<code {digest}>"


def _class_data(name: str, attr) -> bool:
    """A class-level value a method may read (``factor = 0.1``): no dunder,
    function, property or slot."""
    descriptor = isinstance(attr, property | types.MemberDescriptorType)
    return not name.startswith("__") and not callable(attr) and not descriptor


def _code_digest(code: types.CodeType) -> str:
    """``<code DIGEST>``: 12 hex digits of the SHA-256 of what ``code`` does
    (``_code_text``), so that ``lambda s: 0.1`` and ``lambda s: 0.2`` differ."""
    digest = hashlib.sha256(_code_text(code).encode()).hexdigest()[:12]
    return f"<code {digest}>"


def _code_text(code: types.CodeType) -> str:
    """``code``'s bytecode, the global and attribute names it reads, its
    constants and its signature's shape (``*args`` or not), nested functions'
    code the same way: the same in any process
    of one Python version (no addresses, no salted ``hash``)."""
    consts = ", ".join(map(_const_text, code.co_consts))
    shape = (code.co_argcount, code.co_kwonlyargcount, code.co_flags)
    return f"code({code.co_code.hex()}, {code.co_names!r}, ({consts}), {shape})"


def _const_text(const) -> str:
    if isinstance(const, types.CodeType):
        return _code_text(const)
    if isinstance(const, tuple):
        return f"({', '.join(map(_const_text, const))})"
    if isinstance(const, frozenset):  # its order follows the salted hash
        return f"frozenset({', '.join(sorted(map(_const_text, const)))})"
    return repr(const)


def _is_code(value) -> bool:
    """A function, or a tuple of them (chain's init functions)."""
    if isinstance(value, tuple | list):
        return len(value) > 0 and all(map(callable, value))
    return callable(value)


def _maker(fn: types.FunctionType) -> str:
    """``scale_by_adam`` for ``scale_by_adam.<locals>.update_fn``: the function
    that made ``fn``, or ``fn`` itself."""
    return fn.__qualname__.split(".<locals>.")[0]


def _arguments(fn: types.FunctionType) -> dict:
    """What ``fn`` closes over, and its defaults other than None."""
    code = fn.__code__
    values = {}
    rebound = _rebound(code)
    for name, cell in zip(code.co_freevars, fn.__closure__ or (), strict=True):
        try:
            values[name] = cell.cell_contents
        except ValueError:  # a cell not filled yet
            values[name] = "<unset>"
        if name in rebound and type(values[name]) is int:
            # optax's schedules turn an int they close over into a float on
            # their first call (nonlocal decay_steps): the same schedule before
            # and after
            values[name] = float(values[name])
    given = fn.__defaults__ or ()
    positional = code.co_varnames[code.co_argcount - len(given) : code.co_argcount]
    defaults = dict(zip(positional, given, strict=True))
    for name, value in {**defaults, **(fn.__kwdefaults__ or {})}.items():
        if value is not None:
            values.setdefault(name, value)
    return values


def _rebound(code: types.CodeType) -> frozenset:
    """The names of enclosing scopes that ``code`` assigns (``nonlocal``)."""
    return frozenset(
        op.argval for op in dis.get_instructions(code) if op.opname == "STORE_DEREF"
    )


def _call(name: str, arguments: dict, part) -> str:
    if not arguments:
        return name
    return f"{name}({', '.join(f'{k}={part(v)}' for k, v in arguments.items())})"


def _fields(value) -> dict | None:
    """A named tuple's fields, or an object's attributes (in ``__dict__`` or
    ``__slots__``); None for an object whose state cannot be read (a C type)."""
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return value._asdict()
    if hasattr(value, "__dict__"):
        return vars(value)
    slots = [
        name
        for klass in type(value).__mro__
        for name in _slot_names(klass)
        if hasattr(value, name)
    ]
    if not slots:
        return None
    return {name: getattr(value, name) for name in dict.fromkeys(slots)}


def _slot_names(klass: type) -> list[str]:
    """The ``__slots__`` a class of Python code declares (none for C types)."""
    if "__slots__" not in vars(klass):
        return []
    slots = vars(klass)["__slots__"]
    return (
        [slots] if isinstance(slots, str) else [s for s in slots if s != "__weakref__"]
    )
