"""ssnas: self-supervised, DARTS-style neural architecture search."""

__version__ = "0.1.0"

# Lazy exports (PEP 562): `import ssnas` stays light; torch is imported only when one of these is used.
_LAZY = {
    "load_genotype": ("ssnas.arch", "load_genotype"),
    "build_network": ("ssnas.arch", "build_network"),
    "create_model": ("ssnas.model", "create_model"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'ssnas' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
