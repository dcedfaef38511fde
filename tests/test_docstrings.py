"""Every public module, function, class and method of certkit has a docstring of its own.

"Public": a module-level function or class (a pytest fixture included) whose name does not start with ``_``, defined
in the module being walked (re-exports are checked where they are defined), and every method, property,
classmethod and staticmethod such a class defines itself under a public name. An override needs its own docstring:
the one it would inherit states the base's contract, not what this implementation guarantees. Every module of the
package is walked except ``certkit.__main__``, which runs the command line when imported.

What a docstring says (its guarantees: returns, raises, invariants, units) is for review; this test only makes sure
there is one, so that a public name added without one fails here, naming it.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil

import certkit

#: modules that run something when imported
SKIPPED_MODULES = {"certkit.__main__"}


def _modules() -> list[str]:
    names = ["certkit"] + [m.name for m in pkgutil.walk_packages(certkit.__path__, "certkit.")]
    return sorted(n for n in names if n not in SKIPPED_MODULES)


def _has_doc(obj) -> bool:
    """A non-blank docstring written for ``obj``: a dataclass's generated one (its signature) does not count."""
    doc = obj.__doc__
    if not isinstance(doc, str) or not doc.strip():
        return False
    return not (inspect.isclass(obj) and dataclasses.is_dataclass(obj) and doc.startswith(f"{obj.__name__}("))


def _is_function_or_class(obj) -> bool:
    """A class, or a function (also behind a decorator that wraps it: a pytest fixture, ``torch.inference_mode``)."""
    return inspect.isclass(obj) or (callable(obj) and inspect.isfunction(inspect.unwrap(obj)))


def _methods(cls):
    """(name, function) for every public method, property, classmethod and staticmethod ``cls`` defines itself (a
    dataclass field's default, even a function, is no method)."""
    fields = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    for name, value in vars(cls).items():
        if name.startswith("_") or name in fields:
            continue
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        elif isinstance(value, property):
            value = value.fget
        if value is not None and inspect.isfunction(inspect.unwrap(value)):
            yield name, value


def undocumented() -> list[str]:
    """The qualified name of every public module, function, class and method without a docstring of its own."""
    missing = []
    for module_name in _modules():
        module = importlib.import_module(module_name)
        if not _has_doc(module):
            missing.append(module_name)
        for name, obj in vars(module).items():
            if name.startswith("_") or not _is_function_or_class(obj) or getattr(obj, "__module__", None) != module_name:
                continue
            if getattr(obj, "__name__", name) != name:  # an alias (``VisionLanguageGenerator = VisionLanguageModel``)
                continue
            if not _has_doc(obj):
                missing.append(f"{module_name}.{name}")
            if inspect.isclass(obj):
                missing += [f"{module_name}.{name}.{method}" for method, fn in _methods(obj) if not _has_doc(fn)]
    return sorted(set(missing))


def test_every_public_name_has_a_docstring():
    missing = undocumented()
    assert not missing, f"{len(missing)} public name(s) without a docstring (say what each guarantees):\n  " + "\n  ".join(missing)


def test_the_check_sees_a_missing_docstring(monkeypatch):
    """The walk is a real check: a function, a method or a dataclass whose docstring is removed is reported by name."""
    from certkit import bounds
    from certkit.demo import world

    monkeypatch.setattr(bounds.worst_case, "__doc__", None)
    monkeypatch.setattr(bounds.Gaussian.params, "__doc__", None)  # a method, reported in its own module (certkit.noise)
    monkeypatch.setattr(world.Sample, "__doc__", "Sample(image: numpy.ndarray, prompt: str)")  # what @dataclass writes
    found = undocumented()
    assert {"certkit.bounds.worst_case", "certkit.noise.Gaussian.params", "certkit.demo.world.Sample"} <= set(found)
