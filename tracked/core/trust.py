"""Which types a skops model may hold: never those of ``os``, ``subprocess`` and their like,
whatever a pipeline lists.
"""

from __future__ import annotations

#: Modules whose functions and types are never trusted in a model, whatever a pipeline lists:
#: loading would hand them arguments (``FunctionTransformer(inverse_func=os.system)``).
NEVER_TRUSTED = frozenset(
    {
        "os", "posix", "nt", "subprocess", "builtins", "shutil", "sys", "importlib", "runpy",
        "pickle", "marshal", "ctypes", "socket", "pty", "code", "codecs", "io", "pathlib",
        "tempfile", "signal", "multiprocessing", "threading", "webbrowser",
    }
)  # fmt: skip


#: The libraries whose own types a skops model may hold without being listed.
OWN_TRUSTED = ("sklearn", "numpy")


def type_name(item: object) -> str:
    """``module.QualName`` of a class or function given as itself or as that string."""
    if isinstance(item, str):
        return item
    module = getattr(item, "__module__", None)
    qualname = getattr(item, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        msg = f"{item!r} is neither a class nor a function nor a 'module.Name' string"
        raise TypeError(msg)
    return f"{module}.{qualname}"


def never_trusted(name: str) -> bool:
    """Whether ``name`` (``module.Name``) comes from a module that is never trusted."""
    return name.split(".", 1)[0] in NEVER_TRUSTED
