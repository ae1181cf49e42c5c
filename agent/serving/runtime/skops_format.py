"""Load models saved with skops, refusing any type outside an allow-list.

skops files are not pickles: they describe objects by type name, and skops only rebuilds types
the loader trusts. Tether trusts the types skops trusts by default plus those under the
scikit-learn, numpy and scipy packages, except modules that read files or run code.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import skops.io

from agent.serving.runtime.errors import LoadFailed, UntrustedTypes

NAME = "skops"

TRUSTED_PREFIXES: tuple[str, ...] = ("sklearn.", "numpy.", "scipy.")
# Inside the trusted packages, these read or write files, or load other pickles: a model
# needs none of them, and a crafted file could reach them through e.g. FunctionTransformer.
DENIED_PREFIXES: tuple[str, ...] = (
    "numpy.load",
    "numpy.save",
    "numpy.fromfile",
    "numpy.loadtxt",
    "numpy.genfromtxt",
    "numpy.memmap",
    "numpy.lib.npyio",
    "numpy.lib._npyio_impl",
    "numpy.lib.format",
    "numpy.ctypeslib",
    "numpy.f2py",
    "numpy.distutils",
    "numpy.testing",
    "scipy.io",
    "sklearn.datasets",
    "sklearn.utils._testing",
    "sklearn.externals",
)


def load(path: Path, *, trusted_prefixes: Iterable[str] = TRUSTED_PREFIXES) -> Any:
    """Load the estimator at `path` if all its types are trusted, else raise UntrustedTypes."""
    try:
        untrusted = skops.io.get_untrusted_types(file=path)
    except Exception as exc:
        raise LoadFailed(f"{path.name}: not a readable skops file: {exc}") from exc
    refused = [name for name in untrusted if not is_trusted(name, trusted_prefixes)]
    if refused:
        raise UntrustedTypes(
            f"skops artifact holds untrusted type{'s' if len(refused) > 1 else ''}: "
            f"{', '.join(sorted(refused))} (allowed: skops defaults and "
            f"{', '.join(p + '*' for p in trusted_prefixes)})",
            sorted(refused),
        )
    return skops.io.load(path, trusted=untrusted)


def is_trusted(type_name: str, trusted_prefixes: Iterable[str] = TRUSTED_PREFIXES) -> bool:
    """Tell whether a fully qualified type or function name is on the allow-list."""
    if any(type_name == p or type_name.startswith(p + ".") for p in DENIED_PREFIXES):
        return False
    return any(type_name.startswith(prefix) for prefix in trusted_prefixes)
