"""The ``certkit`` command line (also ``python -m certkit``).

* ``certkit bounds``: the (d, eps) frontier -- the largest certified image radius per number of token edits.
* ``certkit plan``: how many samples a requirement needs (fixed n and the sequential test).
* ``certkit report`` / ``diff`` / ``merge``: render the HTML report, compare two runs, merge shards.
* ``certkit calibrate``: an oracle's measured error bound from a labelled sample of a run's answers.
* ``certkit audit``: run the audit suites under ``audits/`` (the README's main job).
* ``certkit attest`` / ``verify`` / ``keygen``: sign a results folder (DSSE, in-toto), check it, make a key pair.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from . import bounds, stats
from .certificate import NOT_CERTIFIED
from .gate import counts_text
from .noise import UniformReplace
from .requirement import BY_NAME, Noise, unit_interval


def _probability(name: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        why = unit_interval(name, value)
        if why and not (name == "p_a" and value == 1.0):
            raise argparse.ArgumentTypeError(f"{why}, got {text}")
        return value

    return parse


def _positive(name: str, kind=float):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a {'whole ' if kind is int else ''}number, got {text!r}") from None
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"{name} must be > 0, got {text}")
        return value

    return parse


def _non_negative(name: str, kind=float):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a {'whole ' if kind is int else ''}number, got {text!r}") from None
        if not (value >= 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"{name} must be >= 0, got {text}")
        return value

    return parse


def _pytest_default(name: str):
    """The default the pytest plugin uses for a setting (certkit.requirement's table), so the command line and a pytest
    run agree."""
    return BY_NAME[name].default


def _add_kernel_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sigma", type=_positive("--sigma"), default=_pytest_default("sigma"),
                   help=f"{BY_NAME['sigma'].help} (default: %(default)s)")
    p.add_argument("--beta", type=_probability("--beta"), help="per-token replace/mask probability of the text kernel")
    vocab = p.add_mutually_exclusive_group()
    vocab.add_argument("--vocab", type=_positive("--vocab", int), help="replacement alphabet size V (uniform kernel)")
    vocab.add_argument("--model", metavar="DIR", help="read V from a model folder: its tokenizer's ids less the special and "
                       "image-layout tokens, as VisionLanguageModel and ServedVLM count them (no weights are loaded)")
    p.add_argument("--kernel", choices=("uniform", "mask"), default=_pytest_default("kernel"), help="text kernel (default: %(default)s)")
    # --tau: the name the papers use; the markers, ini keys and options say threshold
    p.add_argument("--threshold", "--tau", dest="tau", metavar="THRESHOLD", type=_probability("--threshold"),
                   default=_pytest_default("threshold"), help=f"{BY_NAME['threshold'].help} (default: %(default)s)")


def _alphabet_size(folder: str, parser: argparse.ArgumentParser) -> int:
    """The replacement alphabet size of the model saved in ``folder`` (its processor and config; no weights)."""
    path = Path(folder)
    if not path.is_dir():
        parser.error(f"--model {folder!r} is not a folder; pass the model's folder (config.json, tokenizer and processor files)")
    try:
        from transformers import AutoConfig, AutoProcessor

        from .models.encoding import ProcessorEncoding

        encoding = ProcessorEncoding(AutoProcessor.from_pretrained(path), AutoConfig.from_pretrained(path))
    except Exception as exc:  # noqa: BLE001 - whatever transformers or certkit refuses, the user gets its message, not a trace
        parser.error(f"--model {folder!r}: cannot read its processor and config ({type(exc).__name__}: {exc}); give --vocab instead")
    return len(encoding.alphabet)


def _noise(args, parser: argparse.ArgumentParser) -> Noise:
    """The noise the flags state (no text kernel without --beta); a missing or bad flag is a usage error."""
    if args.beta is None:
        if args.vocab is not None or args.model is not None:
            parser.error(f"{'--vocab' if args.vocab is not None else '--model'} needs --beta (the text kernel's replacement probability)")
        return Noise(args.sigma, 0.0)
    if args.kernel != "mask":
        if args.model is not None:
            args.vocab = _alphabet_size(args.model, parser)
        if args.vocab is None:
            parser.error("the uniform text kernel needs --vocab (alphabet size, e.g. --vocab 32000) or --model DIR; or use --kernel mask")
        if args.vocab < 2:
            parser.error("--vocab must be at least 2")
    return Noise(args.sigma, args.beta, args.kernel, args.vocab if args.kernel != "mask" else None)


def _fmt_radius(r: float) -> str:
    if r == -math.inf:
        return NOT_CERTIFIED
    if r == math.inf:
        return "any radius"
    return f"{r:.6f}"


def cmd_bounds(args, parser) -> int:
    """Print the (d, eps) frontier for a p_A lower bound: the largest certified image radius at each d up to
    ``--max-edits`` (only d = 0 without a text kernel), as :func:`certkit.bounds.frontier` computes it; exit 0."""
    noise = _noise(args, parser)
    text, image = noise.text(), noise.image()
    max_d = args.max_edits if text is not None else 0
    if text is None and args.max_edits:
        print("note: no text kernel given (--beta), so only d = 0 is shown", file=sys.stderr)
    radii = bounds.frontier(args.p_a, image, text, max_d, args.tau)
    kernel = "none" if text is None else (f"uniform(beta={text.beta}, V={text.vocab_size})" if isinstance(text, UniformReplace)
                                          else f"mask(beta={text.beta})")
    print(f"p_A = {args.p_a}   sigma = {args.sigma}   text kernel = {kernel}   tau = {args.tau}")
    print(f"{'edits d':>8}  {'max image l2 radius':>20}")
    for d, r in enumerate(np.atleast_1d(radii)):
        print(f"{d:>8}  {_fmt_radius(float(r)):>20}")
    return 0


#: `certkit plan`'s exit status for a requirement no sample count, or not n_max samples, can certify (2 is a usage error)
PLAN_UNREACHABLE = 3


def cmd_plan(args, parser) -> int:
    """Print the requirement and its noise as read (sigma, the text kernel, beta and the alphabet size V, and where V
    came from), p* (the smallest p_A that certifies it), the fixed-n sample size and what the sequential test spends;
    exit 0. Where no number of samples can certify it (p* unreachable, or p* + oracle error >= 1), or n_max samples
    cannot even if every one agrees, it also prints the largest image radius and the largest threshold tau that are
    reachable with the other settings as given, and exits :data:`PLAN_UNREACHABLE` (3)."""
    noise = _noise(args, parser)
    text, image = noise.text(), noise.image()
    if args.edits and text is None:
        parser.error("--edits > 0 needs a text kernel: give --beta (and --vocab for the uniform kernel)")
    p_star = float(bounds.required_p_a(image, args.radius, text, args.edits, args.tau))
    print(f"requirement: image l2 radius {args.radius} at {args.edits} token edits, tau = {args.tau}, alpha = {args.alpha}")
    print(f"noise: sigma = {args.sigma}, {_text_kernel_words(args, text)}")
    if not math.isfinite(p_star) or p_star + args.oracle_error >= 1.0:
        print("p* (smallest p_A that certifies): unreachable -- no number of samples can certify this requirement")
        _print_reachable(args, image, text)
        return PLAN_UNREACHABLE
    print(f"p* (smallest p_A that certifies): {p_star:.6f}")
    n_fixed = int(stats.samples_needed(p_star, args.alpha, args.oracle_error))
    print(f"fixed n (one Clopper-Pearson bound, every sample agreeing): n >= {n_fixed}")
    if not _plan_sequential(min(p_star + args.oracle_error, math.nextafter(1.0, 0.0)), args.alpha, args.n_max):
        _print_reachable(args, image, text)
        return PLAN_UNREACHABLE
    return 0


def _text_kernel_words(args, text) -> str:
    """The text kernel as `certkit plan` read it: kind, beta and alphabet size V (and the folder V was read from)."""
    if text is None:
        return "no text kernel (no --beta: the requirement edits no token)"
    if not isinstance(text, UniformReplace):
        return f"text kernel = mask (beta = {text.beta}; no alphabet)"
    source = (f"read from --model {args.model}: its tokenizer's ids less the special and image-layout tokens" if args.model
              else "--vocab")
    return f"text kernel = uniform (beta = {text.beta}), alphabet V = {text.vocab_size} ({source})"


def _reachable(args, image, text, radius: float, tau: float) -> bool:
    """Whether n_max samples, every one agreeing, certify the requirement at ``radius`` and ``tau`` (else as given)."""
    from .sequential import MixtureTest

    p_star = float(bounds.required_p_a(image, radius, text, args.edits, tau))
    if not math.isfinite(p_star) or p_star + args.oracle_error >= 1.0:
        return False
    test = MixtureTest(min(p_star + args.oracle_error, math.nextafter(1.0, 0.0)), args.alpha, args.n_max)
    return test.min_samples_to_certify() is not None


def _print_reachable(args, image, text) -> None:
    """The largest image radius (at the threshold given) and the largest threshold tau (at the radius given) that n_max
    samples can certify, every other setting as given; each rounded down, so what it prints is reachable."""
    print(f"reachable with the other settings as given ({args.edits} token edits, n_max = {args.n_max}):")
    if _reachable(args, image, text, 0.0, args.tau):
        lo, hi = 0.0, args.radius
        for _ in range(40):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if _reachable(args, image, text, mid, args.tau) else (lo, mid)
        print(f"  image l2 radius up to {math.floor(lo * 1e6) / 1e6:.6f} at tau = {args.tau}")
    else:
        print(f"  no image radius at tau = {args.tau}, not even 0 (fewer edits, a smaller beta or a larger n_max)")
    floor = 1e-12
    if _reachable(args, image, text, args.radius, floor):
        lo, hi = math.log(floor), math.log(args.tau)
        for _ in range(40):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if _reachable(args, image, text, args.radius, math.exp(mid)) else (lo, mid)
        tau = math.exp(lo)
        digits = 2 - math.floor(math.log10(tau))  # three significant digits, rounded down
        print(f"  threshold tau up to {math.floor(tau * 10**digits) / 10**digits:.3g} at image l2 radius {args.radius}")
    else:
        print(f"  no threshold tau at image l2 radius {args.radius}, not even {floor:g}")


def _plan_sequential(p_test: float, alpha: float, n_max: int) -> bool:
    """What the shipped sequential test (the one ``certify`` runs) spends on this requirement; False where n_max samples
    cannot certify it even if every one agrees."""
    import numpy as np

    from .sequential import MixtureTest

    test = MixtureTest(p_test, alpha, n_max)
    first = test.min_samples_to_certify()
    if first is None:
        need = test.samples_to_certify()
        print(f"sequential test (n_max = {n_max}): unreachable: even every sample agreeing needs "
              f"{'more than 10^9' if math.isinf(need) else int(need)} samples; raise n_max to that or relax the requirement")
        return False
    print(f"sequential test (n_max = {n_max}): every sample agreeing certifies at n = {first}")
    rng = np.random.default_rng(0)
    print("  expected samples (200 simulated streams each):")
    for p_true in sorted({1.0, min(1.0, p_test + 0.1), min(1.0, p_test + 0.03), max(0.0, p_test - 0.05)}, reverse=True):
        decision, used = test.simulate(p_true, 200, rng)
        top = max(set(decision), key=list(decision).count)
        print(f"    true p_A = {p_true:.4f}: mean n = {used.mean():.0f}, {100 * (decision == top).mean():.0f}% {top}")
    print(f"  worst case: n_max = {n_max} samples, where p_A is too close to p* for n_max samples to tell (inconclusive)")
    return True


def cmd_audit(args, parser) -> int:
    """pytest on the audit folder; every argument certkit does not know (``-q``, ``-x``, ``-k EXPR``, ``-n 4``,
    ``--certkit-*``) goes to pytest as written, in order. No audit suite is pytest's "no tests collected" (5)."""
    audits = Path(args.path)
    if not audits.is_dir() or not any(audits.rglob("test_*.py")):
        print(f"no audits yet: {audits}/ holds no test_*.py audit suite; nothing was certified", file=sys.stderr)
        return 5
    cmd = [sys.executable, "-m", "pytest", str(audits), *args.pytest_args]
    return subprocess.call(cmd, env=dict(os.environ))


def cmd_report(args, parser) -> int:
    """Render the HTML report of a results file (with ``--baseline``, its comparison; with ``--history``, the trend):
    exit 0 when written, 1 when the HTML cannot be written, 2 (usage) for a file that is not a results document."""
    from .regression import compare
    from .report import write_report
    from .results import ResultsError, load_results, read_history

    try:
        doc = load_results(args.results, "results", check_body=bool(args.baseline))  # a comparison reads every count
        comparison = compare(load_results(args.baseline, "baseline"), doc) if args.baseline else None
        history = read_history(args.history) if args.history else []
    except ResultsError as exc:
        parser.error(str(exc))
    try:
        out = write_report(doc, args.output, baseline=comparison, history=history)
    except OSError as exc:
        print(f"certkit report: could not write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


def cmd_diff(args, parser) -> int:
    """The comparison a run with ``--certkit-baseline`` makes, with the same rule, verdicts, counts line and named
    requirements as the run's terminal (:func:`certkit.regression.counts_line`), and the models and oracles compared;
    exit 1 on regressions."""
    from .regression import compare, counts_line, fingerprint_line, named_lines
    from .results import ResultsError, load_results

    try:
        old, new = load_results(args.old, "old results"), load_results(args.new, "new results")
        result = compare(old, new, alpha=args.alpha)
    except ResultsError as exc:
        parser.error(str(exc))
    print(f"{args.old} -> {args.new}: {counts_line(result)}")
    print(f"  {fingerprint_line(result)}")
    print(f"  rule: {result['rule']}")
    for _, line in named_lines(result):
        print(f"  {line}")
    if result["removed"] and not args.allow_removed:
        print(f"  {len(result['removed'])} requirement(s) of {args.old} are not in {args.new}: that fails, as it fails a run's gate "
              "(pass --allow-removed when they were removed on purpose)")
    return 1 if result["regressions"] or (result["removed"] and not args.allow_removed) else 0


def cmd_merge(args, parser) -> int:
    """Merge the shards' results into one run's document (:func:`certkit.results.merge`, which records every shard's
    command and times and the merge's own), compare it with ``--baseline`` and gate it once
    (:func:`certkit.gate.decide_document`): exit 0 only when the merged gate passed, 1 when it failed or is incomplete,
    2 when the shards cannot be merged (each reason named)."""
    import time

    from .gate import decide_document
    from .regression import compare, counts_line, fingerprint_line
    from .results import ResultsError, baseline_record, load_results, merge, write_results

    started = time.time()
    try:
        docs = [load_results(p, "shard") for p in args.shards]
        baseline = load_results(args.baseline, "baseline") if args.baseline else None
        merged = merge(docs, list(args.shards), force=args.force, command=["certkit", *args.argv], started=started)
        comparison = compare(baseline, merged) if baseline is not None else None
    except ResultsError as exc:
        print(f"certkit merge: {exc}", file=sys.stderr)
        return 2
    if comparison is not None:
        merged["baseline"] = baseline_record(args.baseline, comparison)
    decide_document(merged, comparison, args.baseline)
    write_results(Path(args.output), merged)
    s, run = merged["summary"], merged["run"]
    shards = f"{run['merged_shards']} shards" if run.get("merged_shards") else \
        f"{len(docs)} results files (not made with --certkit-shard: that they cover the suite once is not checked)"
    print(f"merged {shards} into {args.output}: {counts_text(s)}")
    for item in run.get("merged_despite", []):
        print(f"  merged despite a different {item} (--force)")
    print(f"gate: {s['gate_reason']}")
    if comparison is not None:
        print(f"baseline {args.baseline}: {counts_line(comparison)}; {fingerprint_line(comparison)}")
    if args.report:
        from .report import write_report

        write_report(merged, args.report, baseline=comparison)
        print(f"written: {args.report}")
    return 0 if s["gate"] == "passed" else 1


def _evidence_failed(command: str, exc) -> int:
    """One line on standard error for evidence that failed (exit 1) or an input that cannot be used (exit 2)."""
    print(f"certkit {command}: {exc}", file=sys.stderr)
    return 2 if exc.usage else 1


def cmd_attest(args, parser) -> int:
    """Sign the results folder: DIR/attestation.dsse.json (with ``--key``) and the bare statement (``--statement``); exit 0
    when written, 2 (one line naming the file) for a key or folder that cannot be used."""
    from .evidence import EvidenceError, attest

    if args.key is None and args.statement is None:
        print("certkit attest: give --key KEY.pem (an Ed25519 private key) to sign, or --statement FILE to write the "
              "statement for another signer", file=sys.stderr)
        return 2
    try:
        out, statement = attest(args.dir, args.key, junit=args.junit, statement_out=args.statement)
    except EvidenceError as exc:
        return _evidence_failed("attest", exc)
    except OSError as exc:
        print(f"certkit attest: could not write into {args.dir}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    for subject in statement["subject"]:
        print(f"signed   {subject['name']}  sha256 {subject['digest']['sha256']}" if out else
              f"subject  {subject['name']}  sha256 {subject['digest']['sha256']}")
    if args.statement:
        print(f"written: {args.statement} (the in-toto statement, unsigned)")
    if out:
        import json

        print(f"written: {out} (DSSE envelope, Ed25519 key {json.loads(out.read_text())['signatures'][0]['keyid']})")
    return 0


def cmd_verify(args, parser) -> int:
    """Verify the folder's attestation: one line per file checked and exit 0, or one line naming the first file (and
    line) that fails and exit 1 (2 for a key file or folder that cannot be used)."""
    from .evidence import EvidenceError, verify

    try:
        lines = verify(args.dir, args.key)
    except EvidenceError as exc:
        return _evidence_failed("verify", exc)
    print("\n".join(lines))
    return 0


def cmd_keygen(args, parser) -> int:
    """Write a new Ed25519 key pair (KEY.pem, KEY.pub.pem) and print its key id; exit 2 if either file exists."""
    from .evidence import EvidenceError, keygen

    try:
        private, public, kid = keygen(args.key)
    except EvidenceError as exc:
        return _evidence_failed("keygen", exc)
    print(f"written: {private} (private: keep it secret; sign with `certkit attest DIR --key {private}`)")
    print(f"written: {public} (public: give it to whoever verifies; `certkit verify DIR --key {public}`)")
    print(f"keyid: {kid}")
    return 0


def cmd_calibrate(args, parser) -> int:
    """Measure an oracle's error on a labelled sample of a run's answers (``--certkit-label-sample``): print the bound,
    the line to paste as the oracle's ``error=`` and how many more labelled answers the ``--target`` e needs; exit 0.
    A bad file, line, label, oracle or case file, or a set too small for a useful bound, is a usage error (exit 2)
    in one line naming the file (and line) and the fix."""
    from .calibration import DISAGREEMENT, calibrate, load_oracle, more_needed, read_labelled
    from .oracles import OracleError

    try:
        records, unlabelled = read_labelled(args.labelled)
        oracle = load_oracle(args.oracle)
    except ValueError as exc:
        _refuse("calibrate", str(exc))
    for r in records:
        if r["label"] not in oracle.all_labels:
            _refuse("calibrate", f"{args.labelled}:{r['_line']}: label {r['label']!r} is not one of oracle {oracle.name}'s labels "
                    f"{list(oracle.all_labels)}; correct the label")
    answers: list = [r["answer"] for r in records]
    if oracle.needs_request:
        answers = [{"answer": r["answer"], "request": _request(r, args)} for r in records]
    try:
        bound = calibrate(oracle, answers, [r["label"] for r in records], args.alpha, outcome=args.outcome)
        said = [oracle([a["answer"]], request=a["request"])[0] for a in answers] if oracle.needs_request else oracle(answers)
    except OracleError as exc:
        _refuse("calibrate", f"{args.labelled}: {str(exc).removeprefix('calibrate(): ')}")
    rest = f"; the {unlabelled} unlabelled line(s) after them are not used" if unlabelled else ""
    print(f"{args.labelled}: {bound.n} labelled answers{rest}; oracle {oracle.behaviour}")
    what = ("answers whose oracle label is not the true one" if bound.kind == DISAGREEMENT
            else f"answers the oracle labels {bound.outcome!r} whose true label is another")
    print(f"mistakes: {bound.mistakes} of {bound.n} ({what})")
    print(f"upper bound e = {bound.upper:.6g} at alpha_o = {bound.alpha:g} (one-sided Clopper-Pearson); labelled set {bound.digest}")
    print(f"a certificate at alpha with this e subtracted holds with probability >= 1 - (alpha + {bound.alpha:g}) (union bound)")
    print("paste into conftest.py as the oracle's error (after `import certkit.oracles`):")
    print(f"    error={bound.code()}")
    zero, at_rate = more_needed(bound.mistakes, bound.n, bound.alpha, args.target)
    if zero == 0:
        print(f"target e <= {args.target:g}: reached")
    else:
        rate = bound.mistakes / bound.n
        zero_text = "more than 10^9" if zero is None else str(zero)
        if not bound.mistakes:
            print(f"target e <= {args.target:g}: {zero_text} more labelled answers, if none of them is a mistake")
        else:
            rate_text = "never (the rate is not below the target)" if at_rate is None else f"about {at_rate} more"
            print(f"target e <= {args.target:g}: {zero_text} more labelled answers if none of them is a mistake; {rate_text} if "
                  f"they err at the observed rate {rate:.3%}")
    changed = sum(r.get("oracle_label") not in (None, o) for r, o in zip(records, said))
    if changed:
        print(f"note: the oracle now labels {changed} of these answers otherwise than the run that sampled them (oracle_label): "
              "it changed since; the bound is of the oracle as it is now")
    if bound.kind == DISAGREEMENT:
        print("note: without --outcome this is the disagreement rate, good for every outcome; --outcome A measures the "
              "false-A rate a certificate of A needs, which is smaller")
    return 0


def _refuse(command: str, message: str):
    """A bad input of ``certkit COMMAND``: one line on standard error, exit status 2 (as a usage error), no usage text."""
    print(f"certkit {command}: {message}", file=sys.stderr)
    raise SystemExit(2)


def _request(record: dict, args):
    """The audited case a judged answer was given for, from ``--cases`` by the record's case id (its content hash checked)."""
    from .casefiles import load_cases
    from .cases import CaseError

    if args.cases is None:
        _refuse("calibrate", f"--oracle {args.oracle}: this oracle judges each answer with its request; give --cases FILE, the case "
                "file the audit loads (the requests are looked up by the sample's case ids)")
    if not hasattr(args, "_cases"):
        try:
            args._cases = {case.id: case for case in load_cases(args.cases)}
        except CaseError as exc:
            _refuse("calibrate", f"--cases {args.cases}: {exc}")
    case = args._cases.get(record.get("case"))
    if case is None:
        _refuse("calibrate", f"{args.labelled}:{record['_line']}: case {record.get('case')!r} is not in --cases {args.cases}")
    if record.get("case_hash") not in (None, case.content_hash):
        _refuse("calibrate", f"{args.labelled}:{record['_line']}: case {case.id!r} in {args.cases} differs from the one the run "
                "sampled (its prompt or image changed): give the case file the run used")
    return case


def build_parser() -> argparse.ArgumentParser:
    """The ``certkit`` parser for every subcommand but ``audit`` (which passes pytest's flags through): defaults of the
    requirement settings come from :data:`certkit.requirement.SETTINGS`; a bad value is a usage error naming the flag."""
    parser = argparse.ArgumentParser(prog="certkit", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    b = sub.add_parser("bounds", help="print the (d, eps) frontier: max certified image radius per token-edit budget")
    b.add_argument("--p-a", dest="p_a", type=_probability("p_a"), required=True, help="clean probability (use a lower bound)")
    _add_kernel_args(b)
    b.add_argument("--max-edits", type=_non_negative("--max-edits", int), default=8, help="largest d to show (default: %(default)s)")
    b.set_defaults(func=cmd_bounds)

    p = sub.add_parser("plan", help="samples needed to certify an image radius at d token edits",
                       epilog=f"exit status: 0 if n_max samples can certify the requirement; {PLAN_UNREACHABLE} if it is unreachable "
                              "(no number of samples, or not n_max, can certify it: the largest reachable radius and threshold "
                              "are printed); 2 for a usage error")
    p.add_argument("--radius", type=_non_negative("--radius"), required=True, help="image l2 radius to certify")
    p.add_argument("--edits", type=_non_negative("--edits", int), default=0, help="token edits d (default: %(default)s)")
    _add_kernel_args(p)
    p.add_argument("--alpha", type=_probability("--alpha"), default=_pytest_default("alpha"),
                   help="false-certification rate (default: %(default)s)")
    p.add_argument("--oracle-error", type=_non_negative("--oracle-error"), default=0.0, help="oracle error bound e (default: %(default)s)")
    p.add_argument("--n-max", type=_positive("--n-max", int), default=_pytest_default("n_max"),
                   help="sample cap of the sequential test (default: %(default)s, as in a pytest run)")
    p.set_defaults(func=cmd_plan)

    r = sub.add_parser("report", help="render the HTML audit report from a results.json")
    r.add_argument("results", help="a results file written by the certkit pytest plugin")
    r.add_argument("-o", "--output", default="reports/audit.html", help="the HTML file to write (default reports/audit.html)")
    r.add_argument("--baseline", default=None,
                   help="a baseline results file: adds the regressions section and the vs-baseline column, as the run did")
    r.add_argument("--history", default=None, help="a history file (reports/history.jsonl): adds the trend chart, as the run did")
    r.set_defaults(func=cmd_report)

    d = sub.add_parser("diff", help="compare two results files; exit 1 on regressions or removed requirements")
    d.add_argument("old")
    d.add_argument("new")
    d.add_argument("--alpha", type=_probability("--alpha"), default=None,
                   help="family-wise level of the test of the two runs' counts (default: the new run's alpha)")
    d.add_argument("--allow-removed", action="store_true", help="requirements of OLD missing from NEW do not fail")
    d.set_defaults(func=cmd_diff)

    m = sub.add_parser("merge", help="merge the shards' results files into one run's and gate it (exit 1 unless the gate passed)")
    m.add_argument("shards", nargs="+", help="results files (same models, oracles, seed and settings)")
    m.add_argument("-o", "--output", required=True, help="the merged results file to write")
    m.add_argument("--force", action="store_true", help="merge even if models, oracles, seed, settings, certkit version or gate differ")
    m.add_argument("--baseline", default=None, help="a baseline results file: regressions and removed requirements fail the merged gate")
    m.add_argument("--report", default=None, metavar="HTML", help="also write the merged audit report here")
    m.set_defaults(func=cmd_merge)

    at = sub.add_parser("attest", help="sign a results folder: DIR/attestation.dsse.json, a DSSE envelope of an in-toto statement")
    at.add_argument("dir", metavar="DIR", help="the folder the run wrote (reports/): results.json, audit.html, history.jsonl")
    at.add_argument("--key", default=None, metavar="KEY.pem", help="Ed25519 private key, PEM (certkit keygen, or openssl genpkey "
                    "-algorithm ed25519); an encrypted one reads its passphrase from CERTKIT_KEY_PASSWORD")
    at.add_argument("--junit", default=None, metavar="XML", help="the run's JUnit file, inside DIR (default: the run's "
                    "--junitxml where it lies in DIR, else the only *.xml in DIR)")
    at.add_argument("--statement", default=None, metavar="FILE", help="also write the unsigned in-toto statement here (to sign it "
                    "with another tool, e.g. keyless with sigstore); without --key, only this")
    at.set_defaults(func=cmd_attest)

    v = sub.add_parser("verify", help="check DIR/attestation.dsse.json: signature, every file's sha256, the history chain")
    v.add_argument("dir", metavar="DIR", help="the signed folder")
    v.add_argument("--key", required=True, metavar="PUB.pem", help="the signer's Ed25519 public key, PEM")
    v.set_defaults(func=cmd_verify)

    k = sub.add_parser("keygen", help="write a new Ed25519 key pair for certkit attest: KEY.pem and KEY.pub.pem")
    k.add_argument("key", metavar="KEY.pem", help="where to write the private key (the public key goes beside it, .pub.pem)")
    k.set_defaults(func=cmd_keygen)

    c = sub.add_parser("calibrate", help="measure an oracle's error on a labelled sample of a run's answers (--certkit-label-sample)")
    c.add_argument("labelled", help="the label-sample JSON lines, with each line's \"label\" filled in from the top")
    c.add_argument("--oracle", required=True, metavar="MODULE:ATTR",
                   help="the oracle: an Oracle (or a function returning one) in a module or .py file, e.g. "
                        "audits/conftest.py:certkit_oracle")
    c.add_argument("--outcome", default=None, help="the certified outcome A: bound the false-A rate (default: the disagreement rate)")
    c.add_argument("--alpha", type=_probability("--alpha"), default=0.01, help="the bound's level alpha_o (default: %(default)s)")
    c.add_argument("--target", type=_probability("--target"), default=0.02,
                   help="the error e to reach: how many more labelled answers it takes (default: %(default)s)")
    c.add_argument("--cases", default=None, help="the audit's case file, for an oracle that judges answers with their requests")
    c.set_defaults(func=cmd_calibrate)

    sub.add_parser("audit", parents=[_audit_parser()], add_help=False,
                   help="run the audit suites (pytest) under audits/; other arguments go to pytest (-q, -x, -k EXPR, -n 4)")
    return parser


def _audit_parser() -> argparse.ArgumentParser:
    a = argparse.ArgumentParser(prog="certkit audit", allow_abbrev=False,
                                description="Run pytest on the audit suites. Every argument but --path goes to pytest, in order.")
    a.add_argument("--path", default="audits", help="folder of audit suites (default audits/)")
    a.set_defaults(func=cmd_audit)
    return a


def main(argv: list[str] | None = None) -> int:
    """Run ``certkit`` with ``argv`` (default ``sys.argv[1:]``) and return its exit status: the subcommand's, 2 for a
    usage error (argparse exits), 141 when the reader of standard output went away (a closed pipe)."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # a pipe's buffered output fails here, inside the handler, not at interpreter exit
        return code
    except BrokenPipeError:  # the reader went away (`certkit plan ... | head`): stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by the broken pipe


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["audit"]:  # pytest's flags are not certkit's: pass through whatever --path is not
        audit = _audit_parser()
        args, args.pytest_args = audit.parse_known_args(argv[1:])
        return int(args.func(args, audit) or 0)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv  # the command as given, for the records that keep it (certkit merge)
    if getattr(args, "oracle_error", 0.0) >= 1.0:
        parser.error("--oracle-error must be below 1")
    return int(args.func(args, parser) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
