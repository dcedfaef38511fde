"""certkit's pytest settings: the ``--certkit-*`` options, the ``certkit_*`` ini keys and the ``certkit`` marker.

The requirement and noise settings are :data:`certkit.requirement.SETTINGS` (name, type, default, help, check, each
defined there once); this module adds the run's own options and generates the options, ini keys and marker checks
from both tables.

Precedence, highest first: command line, the closest ``certkit(...)`` marker (function, class, module), ini key,
built-in default. Every value is converted and checked here, and a bad one names where it came from: an option or
ini key stops the run (``pytest.UsageError``); a bad marker, or a bad argument of the fixture's methods, fails the
requirements it is given to (``RequirementError``). Default and ini paths are anchored at the rootdir, command-line
paths at the directory pytest was started in (as pytest does for ``--junitxml``), so a run started from a subfolder
writes where the project expects.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ..requirement import BY_NAME
from ..requirement import SETTINGS as REQUIREMENT_SETTINGS

#: name -> (type, default, help) of the requirement and noise settings, generated from certkit.requirement's one table;
#: the marker takes the same names
SETTINGS = {s.name: (s.type, s.default, s.help) for s in REQUIREMENT_SETTINGS}
#: the run's own options (not a requirement's): name -> (type, default, help)
RUN_OPTIONS = {
    "seed": (int, 0, "run seed; each case's sample stream is seeded from (seed, case id)"),
    "json": (str, "reports/results.json", "where to write the results file"),
    "report": (str, "reports/audit.html", "where to write the HTML audit report ('none' to skip)"),
    "baseline": (str, None, "a committed results file to compare with: regressions fail the run"),
    "update_baseline": (bool, False, "write this run's results to the --certkit-baseline file"),
    "history": (str, "reports/history.jsonl", "append a summary of each run here ('none' to skip)"),
    "cache_dir": (str, "reports/.cache", "count cache folder ('none' to disable)"),
    "min_pass_rate": (float, None, "gate on the certified share of requirements instead of each one"),
    "allow_inconclusive": (bool, False, "do not fail requirements that stay inconclusive at n_max"),
    "allow_removed": (bool, False, "do not fail the gate on baseline requirements missing from this run (removed, renamed or "
                                   "deselected, e.g. by -k)"),
    "devices": (str, None, "comma-separated GPU ids for xdist workers (default: CUDA_VISIBLE_DEVICES or all)"),
    "shard": (str, None, "run shard K of N (K/N), split by case and balanced by planned cost; auto: from CI_NODE_INDEX and "
                         "CI_NODE_TOTAL; auto/N: K from JOB_COMPLETION_INDEX; then `certkit merge` the N results files"),
    "label_sample": (int, None, "write a uniform random sample of N of the noisy answers this run draws, with case, noise seed and "
                                "oracle label, for people to label (then `certkit calibrate`)"),
    "label_sample_file": (str, "reports/label-sample.jsonl", "where --certkit-label-sample writes its JSON lines"),
    "progress": (str, "30", "seconds between two progress lines (requirements done / total, samples/s, ETA); 0: after every "
                            "requirement; off: none (off under -q unless given)"),
}


def ini_name(name: str) -> str:
    """The ini key of a setting: ``certkit_<name>``."""
    return f"certkit_{name}"


def opt_name(name: str) -> str:
    """The command-line option of a setting: ``--certkit-<name>`` with dashes for underscores."""
    return "--certkit-" + name.replace("_", "-")


def parse_bool(text) -> bool:
    """A bool as it is, or text: 1/true/yes/on and 0/false/no/off (any case, spaces around ignored); ValueError for
    anything else."""
    if isinstance(text, bool):
        return text
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def pytest_addoption(parser: pytest.Parser) -> None:
    """One option and one ini key per setting of both tables, every default None (so "not given" is known and the
    precedence applied here); bool options are flags."""
    group = parser.getgroup("certkit", "certkit: certification requirements")
    for name, (kind, default, help_text) in {**SETTINGS, **RUN_OPTIONS}.items():
        if kind is bool:
            group.addoption(opt_name(name), action="store_const", const=True, default=None, dest=f"certkit_{name}", help=help_text)
        else:
            group.addoption(opt_name(name), action="store", default=None, dest=f"certkit_{name}", metavar=name.upper(),
                            help=f"{help_text} (default {default})")
        parser.addini(ini_name(name), help=help_text, default=None)


def _prefixed(error, text: str) -> str:
    """A usage error says it is certkit's; a requirement's error is shown under its test, already named certkit's."""
    return f"certkit: {text}" if error is pytest.UsageError else text


def convert(name: str, kind, value, source: str, error=pytest.UsageError):
    """``value`` as ``kind``; text is parsed (options and ini keys are text, markers may hold either). A bool is no
    number, so True is refused where an int or a float is meant. ``error``: the exception to raise (inside a test, a
    :class:`~certkit.errors.RequirementError`, so it fails that requirement only)."""
    try:
        if kind in (int, float) and isinstance(value, bool):
            raise ValueError
        if kind is bool:
            return parse_bool(value)
        if kind is float:
            return float(value)
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(str(value)) if not isinstance(value, int) else value
        return str(value)
    except (TypeError, ValueError):
        raise error(_prefixed(error, f"{source} {name} = {value!r} is not a valid {kind.__name__}")) from None


def validate(name: str, value, source: str, error=pytest.UsageError):
    """``value`` if the setting's check accepts it (None always is: "not given"); else ``error`` naming ``source``,
    the setting, the value and why."""
    def bad(why):
        raise error(_prefixed(error, f"{source} {name} = {value!r}: {why}"))

    if value is None:
        return value
    if name in BY_NAME and BY_NAME[name].error(value):
        bad(BY_NAME[name].error(value))
    if name == "min_pass_rate" and not (0 <= value <= 1):
        bad("min_pass_rate must lie in [0, 1]")
    if name == "label_sample" and value < 1:
        bad("label_sample must be a positive number of answers")
    return value


def _ini_value(config: pytest.Config, name: str):
    value = config.getini(ini_name(name))
    return None if value in (None, "", []) else value


def from_cli_or_ini(config: pytest.Config, name: str, kind, default):
    """A setting from the command line, else the ini file, converted to ``kind`` and checked (``pytest.UsageError``
    naming the option or key otherwise); ``default`` as it is where neither gives it."""
    cli = config.getoption(f"certkit_{name}")
    if cli is not None:
        return validate(name, convert(name, kind, cli, "option " + opt_name(name)), "option " + opt_name(name))
    ini = _ini_value(config, name)
    if ini is not None:
        return validate(name, convert(name, kind, ini, "ini key " + ini_name(name)), "ini key " + ini_name(name))
    return default


def path_setting(config: pytest.Config, name: str) -> Path | None:
    """A path option: None for 'none' (or no default); relative command-line paths from the invocation directory,
    relative ini paths and the defaults from the rootdir."""
    default = RUN_OPTIONS[name][1]
    cli = config.getoption(f"certkit_{name}")
    if cli is not None:
        value, base = str(cli), config.invocation_params.dir
    elif _ini_value(config, name) is not None:
        value, base = str(_ini_value(config, name)), config.rootpath
    elif default is not None:
        value, base = default, config.rootpath
    else:
        return None
    if value.strip().lower() in ("none", ""):
        return None
    return base / Path(value).expanduser()


def shown(path: Path | str | None, config: pytest.Config) -> str:
    """A path as the user reads it: relative to where pytest was started when it lies below it."""
    if path is None:
        return "none"
    try:
        return str(Path(path).relative_to(config.invocation_params.dir))
    except ValueError:
        return str(path)


def as_given(path: Path, config: pytest.Config) -> Path:
    """The path as the user reads it (relative to the invocation directory) where that names the same file, for
    messages that quote it; the absolute path otherwise."""
    return Path(shown(path, config)) if Path.cwd() == config.invocation_params.dir else path


def uses_certkit(config: pytest.Config) -> bool:
    """Whether this pytest run is a certkit run by configuration: a ``--certkit-*`` option or a ``certkit_*`` ini key.
    Only then does certkit touch the run before collection (GPU count for ``-n auto``, nvidia-smi); a project that
    only has certkit installed keeps pytest's behaviour."""
    names = {**SETTINGS, **RUN_OPTIONS}
    return any(config.getoption(f"certkit_{n}") is not None or _ini_value(config, n) is not None for n in names)


def function_id(item: pytest.Item) -> str:
    """The node id of ``item``'s test function, without its parametrization (``test_a.py::test_f`` for
    ``test_a.py::test_f[case-1]``): a marker belongs to the function, so its errors name the function."""
    name = getattr(item, "originalname", None)
    return f"{item.parent.nodeid}::{name}" if name and item.parent is not None else item.nodeid


def resolve_settings(config: pytest.Config, item: pytest.Item | None) -> dict:
    """Settings for one test: command line > closest ``certkit`` marker > ini > defaults. A bad marker is a
    ``RequirementError`` naming the test function (the same text for each of its cases)."""
    from ..errors import RequirementError  # a bad marker fails the requirements it marks, not the run

    out = {}
    marker_values: dict = {}
    if item is not None:
        function = function_id(item)
        for marker in reversed(list(item.iter_markers("certkit"))):  # module first, function last wins
            if marker.args:
                raise RequirementError(f"certkit marker on {function}: use keyword arguments, e.g. @pytest.mark.certkit(sigma=0.5)")
            unknown = set(marker.kwargs) - set(SETTINGS)
            if unknown:
                raise RequirementError(f"certkit marker on {function}: unknown setting(s) {sorted(unknown)}; known: {sorted(SETTINGS)}")
            marker_values.update(marker.kwargs)
    for name, (kind, default, _) in SETTINGS.items():
        cli = config.getoption(f"certkit_{name}")
        if cli is not None:
            source = "option " + opt_name(name)
            out[name] = validate(name, convert(name, kind, cli, source), source)
        elif name in marker_values:
            source, value = f"marker on {function}", marker_values[name]
            if value is None and name != "outcome":
                raise RequirementError(f"{source}: {name}=None is not a value; give a {kind.__name__} "
                                       f"or leave the key out to use the default ({default})")
            out[name] = validate(name, convert(name, kind, value, source, RequirementError) if value is not None else None, source,
                                 RequirementError)
        else:
            out[name] = from_cli_or_ini(config, name, kind, default)
    return out


def run_settings(config: pytest.Config) -> dict:
    """The settings every requirement starts from (command line > ini > defaults), before markers."""
    return {name: from_cli_or_ini(config, name, kind, default) for name, (kind, default, _) in SETTINGS.items()}
