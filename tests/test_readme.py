"""The README's figures from the command line are what the command line prints now.

* Every ``$ .venv/bin/certkit ...`` transcript in a ``console`` block is run in-process and must print exactly the
  lines the README shows under it.
* Every requirement in the README's audit example that says ``# p* = P: N samples when every answer ...`` must
  state the p* and the all-agree sample count that ``certkit plan`` prints for its marker and arguments (for the
  32,000-token alphabet the README names).

Regenerate the transcripts after a deliberate change: ``CERTKIT_UPDATE_README=1 pytest tests/test_readme.py``
(the example's comments are checked only: a wrong one fails with the numbers to write).
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
import re
import shlex
from pathlib import Path

from certkit.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
PROMPT = "$ .venv/bin/certkit "
CONSOLE = re.compile(r"```console\n(.*?)```", re.S)
CLAIM = re.compile(r"# p\* = ([0-9.]+): (\d+) samples when every answer")
#: the alphabet size the README's example states its numbers for
EXAMPLE_VOCAB = 32000


def _run(args: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(args)
    return code, out.getvalue()


def _transcripts(text: str) -> list[tuple[str, str]]:
    """(command line, the output the README shows) for each transcript."""
    found = []
    for block in CONSOLE.findall(text):
        parts = re.split(r"^(?=\$ )", block, flags=re.M)
        for part in parts:
            if part.startswith(PROMPT):
                command, _, shown = part.partition("\n")
                found.append((command, shown.rstrip("\n") + "\n"))
    return found


def test_every_transcript_prints_what_the_readme_shows():
    text = README.read_text(encoding="utf-8")
    transcripts = _transcripts(text)
    assert len(transcripts) >= 2, "the README's command-line section lost its transcripts"
    updated = text
    for command, shown in transcripts:
        code, printed = _run(shlex.split(command[len(PROMPT):]))
        assert code == 0, f"{command} exited {code}"
        if os.environ.get("CERTKIT_UPDATE_README"):
            updated = updated.replace(command + "\n" + shown, command + "\n" + printed, 1)
            continue
        assert printed == shown, f"README.md's transcript of `{command}` is stale; rerun with CERTKIT_UPDATE_README=1"
    if updated != text:
        README.write_text(updated, encoding="utf-8")


def _example_requirements(text: str):
    """(function name, settings, claimed p*, claimed n) for each README example test that makes a claim."""
    for block in re.findall(r"```python\n(.*?)```", text, re.S):
        lines = block.splitlines()
        try:
            tree = ast.parse(block)
        except SyntaxError:
            continue
        for fn in (node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)):
            claim = CLAIM.search(lines[fn.lineno - 1])
            if not claim:
                continue
            settings = {}
            for deco in fn.decorator_list:
                if isinstance(deco, ast.Call) and ast.unparse(deco.func) == "pytest.mark.certkit":
                    settings.update({kw.arg: ast.literal_eval(kw.value) for kw in deco.keywords})
            for call in (node for node in ast.walk(fn) if isinstance(node, ast.Call)):
                if ast.unparse(call.func).endswith("assert_certified"):
                    settings.update({kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg in ("edits", "radius")})
            yield fn.name, settings, claim.group(1), int(claim.group(2))


def test_the_example_requirements_state_what_certkit_plan_prints():
    claims = list(_example_requirements(README.read_text(encoding="utf-8")))
    assert len(claims) >= 2, "the README's audit example lost its sample-count comments"
    for name, s, p_claimed, n_claimed in claims:
        args = ["plan", "--radius", str(s.get("radius", 0.0)), "--edits", str(s.get("edits", 0)), "--sigma", str(s["sigma"]),
                "--alpha", str(s.get("alpha", 0.01)), "--threshold", str(s.get("threshold", 0.5))]
        if s.get("edits"):
            args += ["--beta", str(s["beta"]), "--vocab", str(EXAMPLE_VOCAB)]
        code, printed = _run(args)
        assert code == 0, printed
        p_star = re.search(r"p\* \(smallest p_A that certifies\): ([0-9.]+)", printed).group(1)
        n = int(re.search(r"every sample agreeing certifies at n = (\d+)", printed).group(1))
        want = f"# p* = {float(p_star):.4f}: {n} samples"
        assert (f"{float(p_claimed):.4f}", n_claimed) == (f"{float(p_star):.4f}", n), \
            f"README example {name}: the comment must say `{want} when every answer ...` (certkit {' '.join(args)})"


def test_plan_defaults_are_the_pytest_defaults():
    """`certkit plan` with no settings plans the requirement a pytest run with no settings evaluates."""
    from certkit.plugin.settings import SETTINGS

    code, printed = _run(["plan", "--radius", "0.25"])
    assert code == 0
    assert f"n_max = {SETTINGS['n_max'][1]})" in printed
    assert f"tau = {SETTINGS['threshold'][1]}, alpha = {SETTINGS['alpha'][1]}" in printed
    import math

    from certkit import bounds
    from certkit.noise import Gaussian

    p_star = float(bounds.required_p_a(Gaussian(SETTINGS["sigma"][1]), 0.25, None, 0, SETTINGS["threshold"][1]))
    assert f"{p_star:.6f}" in printed and math.isfinite(p_star)
