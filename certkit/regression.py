"""Regressions: compare a run's results document with a baseline's, requirement by requirement.

A *baseline* is a results document (``certkit.results/1``) that a team commits. :func:`compare` decides, per
requirement, whether this run is worse than the baseline in a way that sampling noise cannot explain:

* **status**: a requirement that was certified and now is *not certified*, an *error* (or has no requirement)
  regresses, whatever the counts. For an unchanged model a loss to *not certified* needs one of the two runs'
  sequential tests to have decided wrongly, which each does with probability at most its alpha (far less away
  from p*). This part is not corrected across requirements: over m requirements sitting at p* it could reach
  m alpha per run in the worst case; ``bench/bench_regression.py`` saw none in 20 seeds of its 10-requirement mix.
* **counts**: a one-sided test of ``p_A(this run) < p_A(baseline)`` on the two certificates' successes ``k`` of
  ``n`` samples (:func:`drop_p_value`), with Holm's step-down correction over every compared requirement at the
  run's alpha: for an unchanged model under a new seed, the chance that *any* requirement of the run is flagged by
  this test is at most alpha (Holm holds under any dependence between requirements, and requirements on one
  case share a sample stream). *Certified -> inconclusive* is a regression only when this test also shows the
  drop: near p* seeds alone move a requirement between the two (6 of 200 requirement-runs in the bench).

The counts test compares the probability of one event: only certificates made under the same outcome, noise (sigma,
beta, kernel, alphabet) and case content (its hash) are tested. A requirement whose outcome, noise or case changed
between the runs is listed under ``changed`` with what changed; its status rule still applies, its counts are not
compared (raising sigma lowers p_A without any change in the model). Radius, edits, tau, alpha and n_max change what is
certified, not p_A, so their counts are compared.

The radius changes shown with a flagged drop are the radii the two p_A lower bounds imply, for information; no
fixed tolerance decides anything. New and removed requirements are listed (with the removed ones' baseline
status) and do not regress here; the gate decides what a removed requirement means.

The comparison states both runs' model and oracle fingerprints and whether they differ (``model_changed``,
``oracle_changed``): comparing two releases of a model is what a baseline is for, but it is never silent.
:func:`counts_line`, :func:`fingerprint_line` and :func:`named_lines` are the one wording of a comparison that the
terminal, ``certkit diff`` and the report show, so their counts never differ.

Power depends on n: a requirement whose sequential test stopped after a few dozen samples cannot show a drop of
0.05; of a report-mode frontier at p_A 0.97 falling to 0.92, the bench flagged none of 5 seeds at n = 200 and all
5 at n = 1,000 (BENCHMARKS.md, "Regressions that are real").
"""

from __future__ import annotations

import dataclasses
import math
import numbers

import numpy as np
from scipy.special import logsumexp
from scipy.stats import hypergeom

from .certificate import CERTIFIED, INCONCLUSIVE
from .requirement import Noise, caption, of_certificate
from .results import ResultsError, certificates, implied_radius, records
from .sequential import MixtureTest

__all__ = ["compare", "drop_p_value", "holm", "rule_text", "fingerprints", "KINDS", "counts", "counts_line", "fingerprint_line",
           "named_lines"]


def _key(record: dict, cert: dict, index: int) -> str:
    return f"{record['nodeid']}#{index}" if index else record["nodeid"]


def _index(doc: dict) -> dict:
    out = {}
    for record in records(doc):
        certs = certificates(record) or [None]
        for i, cert in enumerate(certs):
            out[_key(record, cert, i)] = (record, cert)
    return out


# -------------------------------------------------------------------- is a drop in p_A real?

#: the null p_A(baseline) = q runs over (0, 1): a grid even in arcsin(sqrt(q)) (finer towards 0 and 1, where p_A
#: near 1 is common), then _FINE points across the two cells next to the grid's weakest evidence, twice
_NULLS = np.sin(np.linspace(0.0, np.pi / 2, 258)[1:-1]) ** 2
_FINE, _REFINE = 32, 2
#: the mixtures of certkit.sequential at five widths (the size of a drop is not known in advance), averaged: an average
#: of e-values is one. p_star, alpha and n_max play no part in evidence(..., q).
_MIXTURES = tuple(MixtureTest(0.5, 0.5, 1, width=w) for w in (0.005, 0.015, 0.05, 0.15, 0.5))
#: weights of E0 E1, E0 and E1 in the e-value at each null (they sum to 1)
_W_BOTH, _W_ONE_SIDE = 0.9, 0.05
_ROWS = 256  # requirements per vectorised block of the anytime test


def _log_evidence(k0, n0, k1, n1, q):
    """log of ``0.9 E0(q) E1(q) + 0.05 E0(q) + 0.05 E1(q)`` (see :func:`drop_p_value`); broadcasts."""
    average = -math.log(len(_MIXTURES))
    e0 = logsumexp([m.evidence(k0, n0, q, sides="certify")[0] for m in _MIXTURES], axis=0) + average
    e1 = logsumexp([m.evidence(k1, n1, q, sides="against")[1] for m in _MIXTURES], axis=0) + average
    return logsumexp([math.log(_W_BOTH) + e0 + e1, math.log(_W_ONE_SIDE) + e0, math.log(_W_ONE_SIDE) + e1], axis=0)


def _weakest_evidence(k0, n0, k1, n1):
    """Per row (k0 .. n1 of shape (rows, 1)): the smallest log evidence over q in (0, 1), found on the grid and
    refined across the two cells around its minimum."""
    q = np.broadcast_to(_NULLS, (k0.shape[0], _NULLS.size))
    log_e = _log_evidence(k0, n0, k1, n1, q)
    for _ in range(_REFINE):
        i = np.argmin(log_e, axis=1)
        rows = np.arange(q.shape[0])
        lo = np.where(i > 0, q[rows, np.maximum(i - 1, 0)], q[rows, i] / 2)
        hi = np.where(i < q.shape[1] - 1, q[rows, np.minimum(i + 1, q.shape[1] - 1)], (1 + q[rows, i]) / 2)
        q = lo[:, None] + (hi - lo)[:, None] * np.linspace(0.0, 1.0, _FINE)[None, :]
        log_e = _log_evidence(k0, n0, k1, n1, q)
    return log_e.min(axis=1)


def drop_p_value(k0, n0, k1, n1, fixed_n=False):
    """One-sided p-value of ``p_A(current) < p_A(baseline)`` from the baseline's ``k0`` successes of ``n0`` samples
    and the current run's ``k1`` of ``n1`` (scalars or arrays), the two runs' samples independent (different seeds).

    * ``fixed_n`` (both counts from a sample size fixed in advance: report-mode frontiers): Fisher's exact test,
      ``P[X <= k1]`` for ``X`` hypergeometric with the observed margins, the p-value of
      ``scipy.stats.fisher_exact([[k1, n1 - k1], [k0, n0 - k0]], alternative="less")`` computed as its
      ``hypergeom.cdf`` so that it vectorises. Exact and valid at any ``n``; Boschloo's test is a little more
      powerful but costs ``O(n0 * n1)`` per table, 10^8 cells at n = 10,000.
    * otherwise (either ``n`` is where certify mode's sequential test stopped): fixed-n tests are *not* valid there,
      because the stopped proportion is biased towards the boundary it crossed (Fisher's test on such counts flagged
      3.0-3.7% of unchanged pairs at nominal 1% near p*: ``bench/bench_regression.py --stopped``). Valid instead:
      the certify mixture of :mod:`certkit.sequential` on the baseline's counts is an e-value ``E0(q)`` against
      ``p_A(baseline) <= q``, its not-certify mixture on the current counts an e-value ``E1(q)`` against
      ``p_A(current) >= q``, each at *any* stopping time (Ville). If ``p_A(current) >= p_A(baseline)``, at
      ``q = p_A(baseline)`` both are e-values, and so is ``E(q) = 0.9 E0(q) E1(q) + 0.05 E0(q) + 0.05 E1(q)`` (the
      runs are independent, and a weighted mean of e-values is one); ``min(1, 1 / E(q))`` is then a valid p-value
      at that unknown q, so ``sup_q min(1, 1 / E(q))`` is valid. (Far from the data one run's evidence alone
      rejects q, hence the two small one-sided terms; each mixture averages the certify test's priors over five
      widths, since the size of a drop is not known in advance.) The supremum is found numerically: 256 nulls
      even in arcsin(sqrt(q)), then 32 points across the two cells around the weakest, twice; on the cases of
      ``tests/test_regression.py`` it lies within -1e-6 and +0.1% (relative) of the supremum over 20,500 nulls,
      and matched one over 200,000 nulls to 1e-4 when this was written. The test is conservative
      and needs more samples than Fisher's test to show the same drop (bench_regression, (b)).

    Where ``k1 / n1 >= k0 / n0`` the p-value is 1 (raising a p-value keeps it valid). With the *same* seed the
    two runs share their noise: the same model gives identical counts (p-value 1), and a changed model's samples
    are then dependent (for similar models positively, which makes both tests conservative; not for any model).
    """
    scalar = all(np.ndim(v) == 0 for v in (k0, n0, k1, n1, fixed_n))
    k0, n0, k1, n1, fixed_n = (np.atleast_1d(v) for v in np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (k0, n0, k1, n1)),
                                                                              np.asarray(fixed_n, dtype=bool)))
    p = np.ones(k0.shape)
    tested = k1 * n0 < k0 * n1  # the current proportion is below the baseline's
    exact = tested & fixed_n
    if exact.any():
        p[exact] = hypergeom.cdf(k1[exact], n0[exact] + n1[exact], k0[exact] + k1[exact], n1[exact])
    anytime = np.flatnonzero(tested & ~fixed_n)
    for start in range(0, anytime.size, _ROWS):
        rows = anytime[start:start + _ROWS]
        p[rows] = np.exp(np.minimum(0.0, -_weakest_evidence(k0[rows, None], n0[rows, None], k1[rows, None], n1[rows, None])))
    return float(p[0]) if scalar else p


def holm(p_values, alpha: float):
    """Holm's step-down correction: ``(adjusted p-values, rejected)``; rejecting where the adjusted p-value is at
    most ``alpha`` keeps the family-wise error rate at most ``alpha`` under any dependence. Written here, five
    lines, because scipy has only the false-discovery-rate procedures and statsmodels is not a dependency."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    steps = np.minimum(1.0, (p.size - np.arange(p.size)) * p[order])
    adjusted = np.empty(p.size)
    adjusted[order] = np.maximum.accumulate(steps) if p.size else steps
    return adjusted, adjusted <= alpha


def _run_alpha(current: dict, pairs: list) -> tuple[float, str]:
    """The run's alpha: its settings' alpha, else the smallest alpha of its compared certificates."""
    settings = (current.get("run") or {}).get("settings") or {}
    alpha = settings.get("alpha") if isinstance(settings, dict) else None
    if alpha is not None:
        return _checked_alpha(alpha, "the run settings' alpha of the current results"), "the run's alpha"
    alphas = [c.get("alpha") for _, c in pairs if c.get("alpha") is not None]
    if not alphas:
        raise ResultsError("the current results state no alpha (neither run.settings.alpha nor the certificates' alpha); "
                           "write them with this certkit, which records both, or pass the level to compare(..., alpha=...)")
    return min(_checked_alpha(a, "a certificate's alpha in the current results") for a in alphas), "the certificates' smallest alpha"


def _checked_alpha(alpha, what: str) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0.0 < float(alpha) < 1.0:
        raise ResultsError(f"{what} must lie strictly between 0 and 1, got {alpha!r}")
    return float(alpha)


def _event(cert: dict) -> dict:
    """What p_A is the probability of: the outcome and the noise (certkit.requirement's table, read back) and the case."""
    values = of_certificate(cert)
    return {"outcome": values["outcome"], **{f.name: values[f.name] for f in dataclasses.fields(Noise)}, "case": cert.get("case_hash")}


def _event_change(old: dict, new: dict) -> str | None:
    """How the two certificates' events differ, in the report captions' words (None: the same event)."""
    before, after = _event(old), _event(new)
    if not (before["case"] and after["case"]):  # a record without the case's hash: its content cannot be told apart
        before["case"] = after["case"] = None
    if before == after:
        return None
    if before["case"] != after["case"]:
        return "the case's content changed (another image or prompt under the same id)"
    was, now = caption(before), caption(after)
    gone, came = [w for w in was if w not in now], [w for w in now if w not in was]
    return f"{', '.join(gone) or 'settings'} -> {', '.join(came) or 'settings'}"


def _radius_text(r: float) -> str:
    return "none" if r == -math.inf else ("∞" if r == math.inf else f"{r:.4f}")


def compare(baseline: dict, current: dict, alpha: float | None = None, elsewhere=frozenset()) -> dict:
    """Requirement-by-requirement comparison with the rule of this module's docstring.

    Returns ``regressions`` and ``improvements`` (``{"nodeid", "key", "reasons"}``; a regression shown by the counts
    also has ``p_value`` and ``adjusted_p_value``), ``within_noise`` (status changes and lower counts the test does
    not show to be real), ``new`` and ``removed`` (requirement keys: the node id, ``#i`` for a record's i-th
    certificate past the first), ``removed_records`` (``{"key", "nodeid", "status"}``: the removed requirements'
    baseline status), ``changes`` (node id -> text for the report's "vs baseline" column), ``p_values`` (key -> the
    test's p-value), ``changed`` (``{"nodeid", "key", "reasons"}``: requirements whose outcome, noise or case content
    changed, whose counts were not compared), ``fingerprints`` (``{"baseline": {"models", "oracles"}, "current": {...}}``,
    :func:`fingerprints`), ``model_changed`` and ``oracle_changed`` (both runs state fingerprints and they differ), and
    the rule: ``alpha``, ``alpha_source``, ``correction`` ("Holm"),
    ``tests`` (how many requirements the counts test compared) and ``rule`` (one sentence with those numbers). ``alpha`` overrides the
    run's alpha (its settings, else its certificates' smallest). ``elsewhere``: node ids a sharded run left to its other
    shards; baseline requirements among them are not "removed" (``other_shards`` counts them)."""
    old, new = _index(baseline), _index(current)
    shared = sorted(set(old) & set(new))
    both = [key for key in shared if old[key][1] and new[key][1]]
    changed = {key: why for key in both if (why := _event_change(old[key][1], new[key][1]))}
    tested = [key for key in both if key not in changed]
    pairs = [(old[key][1], new[key][1]) for key in tested]
    if alpha is not None:
        alpha, source = _checked_alpha(alpha, "alpha"), "given"
    elif pairs:
        alpha, source = _run_alpha(current, pairs)
    else:
        alpha, source = None, "no requirement to test"
    (k0, n0), (k1, n1) = (np.array([_counts(side[key][1], key, what) for key in tested], dtype=float).reshape(-1, 2).T
                          for side, what in ((old, "baseline"), (new, "current results")))
    p_values = drop_p_value(k0, n0, k1, n1, [old[k][1].get("mode") == "frontier" and new[k][1].get("mode") == "frontier" for k in tested])
    adjusted, rejected = holm(p_values, alpha if alpha is not None else 0.0)
    test_of = {key: (float(p), float(a), bool(r)) for key, p, a, r in zip(tested, np.atleast_1d(p_values), adjusted, rejected)}
    missing = set(old) - set(new)
    removed = sorted(key for key in missing if old[key][0]["nodeid"] not in elsewhere)
    out = {"regressions": [], "improvements": [], "within_noise": [], "new": sorted(set(new) - set(old)), "removed": removed,
           "removed_records": [{"key": key, "nodeid": old[key][0]["nodeid"], "status": _status(*old[key])} for key in removed],
           "changes": {}, "p_values": {key: t[0] for key, t in test_of.items()}, "alpha": alpha, "alpha_source": source,
           "correction": "Holm", "tests": len(tested), "other_shards": len(missing) - len(removed),
           "changed": [{"nodeid": old[key][0]["nodeid"], "key": key, "reasons": [f"changed: {why}; counts not compared"]}
                       for key, why in sorted(changed.items())]}
    out["fingerprints"] = {"baseline": fingerprints(baseline), "current": fingerprints(current)}
    out["model_changed"], out["oracle_changed"] = (_differ(out["fingerprints"], kind) for kind in ("models", "oracles"))
    out["rule"] = rule_text(out)
    for key in shared:
        (orec, ocert), (nrec, ncert) = old[key], new[key]
        ostatus, nstatus, nodeid = _status(orec, ocert), _status(nrec, ncert), nrec["nodeid"]
        p, adj, dropped = test_of.get(key, (None, None, False))
        reasons, better, noise = [], [], []
        if ostatus == CERTIFIED and nstatus not in (CERTIFIED, INCONCLUSIVE):
            reasons.append(f"was certified, now {nstatus}")
        elif ostatus == CERTIFIED and nstatus == INCONCLUSIVE:
            (reasons if dropped else noise).append("was certified, now inconclusive")
        elif ostatus != CERTIFIED and nstatus == CERTIFIED:
            better.append(f"now certified (was {ostatus})")
        lower = p is not None and ncert["successes"] * ocert["n"] < ocert["successes"] * ncert["n"]
        if lower:
            r_old, r_new = implied_radius(ocert), implied_radius(ncert)
            shown = (f"{ocert['successes']}/{ocert['n']} -> {ncert['successes']}/{ncert['n']} successes "
                     f"({'Fisher exact' if ocert.get('mode') == ncert.get('mode') == 'frontier' else 'anytime-valid'} p = {p:.2g}, "
                     f"Holm-adjusted {adj:.2g} {'<=' if dropped else '>'} alpha {alpha:g}); lower bound {ocert['p_a_lower']:.4f} -> "
                     f"{ncert['p_a_lower']:.4f}, max radius {_radius_text(r_old)} -> {_radius_text(r_new)}")
            (reasons if dropped else noise).append(("p_A fell: " if dropped else "within sampling noise: ") + shown)
        entry = {"nodeid": nodeid, "key": key}
        if key in changed:
            reasons, better = [f"{r} ({changed[key]})" for r in reasons], [f"{b} ({changed[key]})" for b in better]
        if reasons:
            out["regressions"].append({**entry, "reasons": reasons, **({"p_value": p, "adjusted_p_value": adj} if dropped else {})})
            out["changes"][nodeid] = "REGRESSED: " + "; ".join(reasons)
        elif better:
            out["improvements"].append({**entry, "reasons": better})
            out["changes"][nodeid] = "; ".join(better)
        elif key in changed:
            out["changes"].setdefault(nodeid, f"changed: {changed[key]}")
        elif noise:
            out["within_noise"].append({**entry, "reasons": noise})
            out["changes"].setdefault(nodeid, "; ".join(noise))
        else:
            same = p is None or (ocert["successes"], ocert["n"]) == (ncert["successes"], ncert["n"])
            out["changes"].setdefault(nodeid, "unchanged" if same else
                                      f"p_A {ocert['successes']}/{ocert['n']} -> {ncert['successes']}/{ncert['n']} successes")
    for key in out["new"]:
        out["changes"][new[key][0]["nodeid"]] = "new"
    return out


def _counts(cert: dict, key: str, what: str) -> tuple[int, int]:
    """A certificate's (successes, n), refused unless whole numbers with 0 <= successes <= n, n >= 1 (a document
    that did not pass :func:`load_results`, such as the one ``certkit report`` reads, reaches here unchecked)."""
    k, n = cert.get("successes"), cert.get("n")
    counts_are_integers = all(isinstance(v, numbers.Real) and not isinstance(v, bool) and float(v).is_integer() for v in (k, n))
    if not counts_are_integers or not 0 <= k <= n or n < 1:
        raise ResultsError(f"{what}: requirement {key}: the certificate's counts are not usable (successes={k!r}, n={n!r}); "
                           "each certificate needs whole numbers 0 <= successes <= n, n >= 1, as certkit writes them")
    return int(k), int(n)


def _status(record: dict, cert: dict | None) -> str:
    return cert["status"] if cert else record.get("status")


def rule_text(comparison: dict) -> str:
    """The regression rule in one or two sentences, with the comparison's numbers (report and ``certkit diff``)."""
    alpha, m = comparison.get("alpha"), comparison.get("tests", 0)
    if alpha is None:
        counts = "; no requirement had certificates in both runs, so no counts were compared"
    else:
        counts = (f", or when a one-sided test of the two runs' counts shows p_A fell (Fisher's exact test where both drew a fixed n, "
                  f"an anytime-valid test where a sequential test stopped), Holm-corrected over the {m} compared requirements at "
                  f"alpha = {alpha:g} ({comparison.get('alpha_source')}), so an unchanged model is flagged by the counts in at most "
                  f"{alpha:g} of runs")
    return (f"A requirement regresses when it was certified and is now not certified or an error{counts}; "
            "certified -> inconclusive regresses only when the counts show the drop. Radii are those the p_A bounds imply.")


# -------------------------------------------------------------------- what was compared with what, and the one wording of it


def fingerprints(doc: dict) -> dict:
    """A results document's model and oracle fingerprints, sorted: its ``run.models`` and ``run.oracles`` where it
    records them, else those of its certificates (``model_fingerprint``, ``oracle_fingerprint``); empty lists for a
    document that states none."""
    run = doc.get("run") if isinstance(doc.get("run"), dict) else {}
    certs = [c for record in records(doc) for c in certificates(record)]
    out = {}
    for kind, field in (("models", "model_fingerprint"), ("oracles", "oracle_fingerprint")):
        stated = run.get(kind)
        values = stated if isinstance(stated, list) and stated else [c.get(field) for c in certs]
        out[kind] = sorted({str(v) for v in values if v})
    return out


def _differ(prints: dict, kind: str) -> bool:
    before, after = prints["baseline"][kind], prints["current"][kind]
    return bool(before) and bool(after) and before != after


#: the comparison's lists in the order every view shows them: (key in the comparison, the words of its count, its label)
KINDS = (("regressions", "regressions", "REGRESSED"), ("improvements", "improvements", "IMPROVED"),
         ("within_noise", "within sampling noise", "NOISE"), ("changed", "changed (counts not compared)", "CHANGED"),
         ("new", "new", "NEW"), ("removed", "removed", "REMOVED"))


def counts(comparison: dict) -> dict:
    """How many requirements each list of the comparison holds, keyed as :data:`KINDS` (a list it lacks counts 0)."""
    return {key: len(comparison.get(key) or []) for key, _, _ in KINDS}


def counts_line(comparison: dict) -> str:
    """The comparison's counts in one line, every list of :data:`KINDS` in its order (``0 regressions, 1 improvements,
    2 within sampling noise, 0 changed (counts not compared), 0 new, 1 removed``): the terminal, ``certkit diff`` and the
    report all print this, so their counts never differ."""
    n = counts(comparison)
    return ", ".join(f"{n[key]} {words}" for key, words, _ in KINDS)


def _short(fingerprint: str) -> str:
    """A fingerprint as a reader compares it: a bare hex digest cut to 12 characters, a tagged one (``label@1:...``)
    to its tag and 16."""
    tag, _, digest = fingerprint.rpartition(":")
    return (f"{tag}:{digest[:16]}" if tag else digest[:12]) if len(fingerprint) > 20 else fingerprint


def _prints_text(values: list) -> str:
    return ", ".join(_short(v) for v in values) if values else "none recorded"


def fingerprint_line(comparison: dict) -> str:
    """Which model and oracle each run certified, in one line: ``model changed: a -> b`` (and likewise the oracle)
    where both runs state fingerprints and they differ, ``same model a and oracle o`` where they agree, and ``none
    recorded`` for a side that states none (an older file): the comparison never hides that it compares two models."""
    prints = comparison.get("fingerprints") or {"baseline": {}, "current": {}}
    parts, same = [], []
    for kind, word in (("models", "model"), ("oracles", "oracle")):
        changed = comparison.get(f"{word}_changed")
        before, after = prints["baseline"].get(kind) or [], prints["current"].get(kind) or []
        if changed:
            parts.append(f"{word} changed: {_prints_text(before)} -> {_prints_text(after)}")
        elif before and after:
            same.append(f"{word} {_prints_text(after)}")
        else:
            parts.append(f"{word}: baseline {_prints_text(before)}, this run {_prints_text(after)} (cannot tell whether it changed)")
    if same:
        parts.append("same " + " and ".join(same))
    return "; ".join(parts)


def named_lines(comparison: dict, kinds=tuple(k for k, _, _ in KINDS), limit: int | None = None) -> list[tuple[str, str]]:
    """One ``(kind, line)`` per requirement of the comparison's ``kinds`` lists, in :data:`KINDS` order:
    ``REGRESSED <key>: <reasons>``, ``IMPROVED``, ``NOISE`` and ``CHANGED`` likewise, ``NEW <key>``, ``REMOVED <key> (was
    <status>)``. With ``limit``, at most that many of each kind, then one ``... and N more`` line. The terminal and
    ``certkit diff`` name requirements with these lines."""
    was = {r["key"]: r["status"] for r in comparison.get("removed_records") or []}
    out = []
    for key, words, label in KINDS:
        if key not in kinds:
            continue
        entries = comparison.get(key) or []
        for entry in entries[:limit] if limit is not None else entries:
            if key == "new":
                out.append((key, f"{label} {entry}"))
            elif key == "removed":
                out.append((key, f"{label} {entry}" + (f" (was {was[entry]})" if entry in was else "")))
            else:
                reasons = [r.removeprefix("changed: ") if key == "changed" else r for r in entry["reasons"]]
                out.append((key, f"{label} {entry['key']}: {'; '.join(reasons)}"))
        if limit is not None and len(entries) > limit:
            out.append((key, f"... and {len(entries) - limit} more {words.split(' (')[0]}"))
    return out
