"""What a model needs where it is loaded: the distributions its types come from, and the
modules that exist only here (the user's script, a module beside it).

Found by pickling the model into nothing with a pickler that notes every object it meets:
the same graph that serialising the model walks, fitted attributes and nested estimators
included, at the cost of one in-memory pickle and no import of mlflow.
"""

from __future__ import annotations

import contextlib
import functools
import io
import sys
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Any

#: Modules that are the running script, under the names Python and multiprocessing give it.
SCRIPT_MODULES = frozenset({"__main__", "__mp_main__"})


#: cloudpickle's by-value registry is process-wide: one save at a time changes it.
_BY_VALUE_LOCK = threading.Lock()


class _Discard(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return len(data)


def held_modules(model: object) -> set[str]:
    """The modules of every class and function reachable from ``model`` (as pickling it
    would reach them), and of the class of every object. The model's own class's module is
    always among them."""
    import cloudpickle

    modules: set[str] = {type(model).__module__}

    class Noting(cloudpickle.CloudPickler):
        def persistent_id(self, obj: Any) -> None:
            if isinstance(obj, type) or (callable(obj) and hasattr(obj, "__module__")):
                module = getattr(obj, "__module__", None)
                if isinstance(module, str):
                    modules.add(module)
            modules.add(type(obj).__module__)
            return None

    # What cannot be pickled fails again, with its own message, when the model is saved;
    # the modules met until then are still needed.
    with contextlib.suppress(Exception):
        Noting(_Discard(), protocol=5).dump(model)
    return modules


@functools.cache
def _distributions() -> dict[str, list[str]]:
    """Top-level module name -> the distributions that provide it.

    Reading it scans every installed distribution's files (about 0.5 s). MLflow scans them
    too, once per process, to check a logged model's requirements against the environment;
    its map (``packages_distributions()`` and a few names of its own) is taken when it is
    there, so that a process pays one scan, not two. Without it: the same scan, ours.
    """
    try:
        from mlflow.utils import requirements_utils

        requirements_utils._init_modules_to_packages_map()
        found = requirements_utils._MODULES_TO_PACKAGES
    except Exception:  # another mlflow: not there, or not a map
        found = None
    if isinstance(found, dict):
        return found
    from importlib.metadata import packages_distributions

    return packages_distributions()


def _is_standard(top: str) -> bool:
    return top in sys.stdlib_module_names or top in sys.builtin_module_names or top == "builtins"


#: Modules Cython creates for its function type (``_cython_3_2_4``): not code of the user's.
_CYTHON_PSEUDO_MODULES = ("_cython_", "cython_runtime")


def local_modules(modules: set[str]) -> set[str]:
    """The modules that no installed distribution provides and that are not the standard
    library: the script itself, or files beside it. Another process, started elsewhere,
    cannot import them."""
    local = set()
    for name in modules:
        top = name.split(".")[0]
        if top.startswith(_CYTHON_PSEUDO_MODULES):
            continue  # Cython's functions name a module of its own, which pickles by reference
        if name in SCRIPT_MODULES or not (_is_standard(top) or top in _distributions()):
            local.add(name)
    return local


def requirements(modules: set[str], base: tuple[str, ...]) -> list[str]:
    """Pinned requirements: the ``base`` distributions, then those that provide ``modules``
    (skipping the standard library and modules no distribution provides)."""
    from importlib.metadata import PackageNotFoundError, version

    names = dict.fromkeys(base)
    for module in sorted(modules):
        top = module.split(".")[0]
        if _is_standard(top):
            continue
        for distribution in _distributions().get(top, ()):
            names.setdefault(distribution)
    pinned = []
    seen = set()
    for name in names:
        try:
            text = f"{name}=={version(name)}"
        except PackageNotFoundError:
            continue
        key = text.lower().replace("_", "-")
        if key not in seen:
            seen.add(key)
            pinned.append(text)
    return pinned


@contextlib.contextmanager
def pickled_by_value(modules: set[str]) -> Iterator[None]:
    """While saving: cloudpickle stores the classes and functions of ``modules`` by value
    (the script's own ``__main__`` always is), so that they load where they do not exist."""
    import cloudpickle

    registered: list[ModuleType] = []
    with _BY_VALUE_LOCK:
        try:
            # cloudpickle stores ``__main__`` by value itself, but not ``__mp_main__`` (the
            # script as a spawn worker imports it): that one is registered like any other.
            for name in sorted(modules - {"__main__"}):
                module = sys.modules.get(name)
                if module is None:
                    continue
                with contextlib.suppress(ValueError):  # already registered: keep it so
                    cloudpickle.register_pickle_by_value(module)
                    registered.append(module)
            yield
        finally:
            for module in registered:
                with contextlib.suppress(ValueError):
                    cloudpickle.unregister_pickle_by_value(module)
