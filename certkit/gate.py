"""The release gate: one list of rules over a run's summary, and the verdict read from it.

Used by the pytest plugin at the end of a run and by ``certkit merge`` for sharded runs, so a merged verdict is the
verdict one run of the whole suite gets. Every rule is a (failed, sentence with its numbers) pair; the verdict, its
one-sentence reason (terminal, results.json, report, JUnit) and the exit status are all read from that one list, so
they cannot disagree. A gate that did not pass is ``failed`` or ``incomplete``; only ``passed`` lets a release through.

A shard of a sharded run (``--certkit-shard``) is gated by :func:`shard_rules` alone: errors in its share and a run
that did not finish. The pass rate, certification of every requirement, regressions and removed requirements are
rules over the whole suite, decided by ``certkit merge``, so a shard of a passing release never fails on its share.
"""

from __future__ import annotations

from .certificate import CERTIFIED, ERROR, INCONCLUSIVE, NOT_CERTIFIED

__all__ = ["PASSED", "FAILED", "INCOMPLETE", "COUNTED", "summarize", "counts_text", "rules", "shard_rules", "decide", "decide_document"]

PASSED, FAILED, INCOMPLETE = "passed", "failed", "incomplete"
#: the statuses the summary counts, in the order it shows them
COUNTED = (CERTIFIED, NOT_CERTIFIED, INCONCLUSIVE, ERROR)


def summarize(records, forward_of=lambda cert: int(cert.get("timings", {}).get("forward_samples", 0))) -> dict:
    """Counts of requirement statuses (``record["status"]``: certified, not certified, inconclusive, error; any
    other status is not counted), ``requirements`` (their sum), ``pass_rate`` (certified / requirements, None when
    there are none), the ``samples`` the certificates read and the ``forward_samples`` drawn for them."""
    counts = dict.fromkeys(COUNTED, 0)
    samples = forward = 0
    for record in records:
        if record.get("status") in counts:
            counts[record["status"]] += 1
        for cert in record.get("certificates") or []:
            samples += int(cert["n"])
            forward += forward_of(cert)
    total = sum(counts.values())
    return {"requirements": total, **counts, "pass_rate": (counts[CERTIFIED] / total) if total else None,
            "samples": samples, "forward_samples": forward}


def counts_text(summary: dict) -> str:
    """The summary's counts in one line: ``N requirements: a certified, b not certified, c inconclusive, e errors``."""
    words = {ERROR: "errors"}
    return f"{summary['requirements']} requirements: " + ", ".join(f"{summary[s]} {words.get(s, s)}" for s in COUNTED)


def rules(summary: dict, gate: dict, comparison: dict | None = None, baseline: str | None = None) -> list[tuple[bool, str]]:
    """Every rule of the gate as (failed, sentence). ``gate`` holds the run's gate settings (``min_pass_rate``,
    ``allow_inconclusive``, ``allow_removed``); ``baseline`` names the baseline compared with (None: none was), and
    ``comparison`` is :func:`certkit.regression.compare`'s answer (None with a baseline: the comparison failed)."""
    out = []
    if summary[ERROR]:
        out.append((True, f"{summary[ERROR]} requirement(s) could not be evaluated"))
    rate, least = summary["pass_rate"], gate.get("min_pass_rate")
    if least is not None:
        out.append((rate is not None and rate < least,
                    f"pass rate {'n/a' if rate is None else f'{100 * rate:.1f}%'} against the required {100 * least:.1f}%"))
    else:
        if summary[NOT_CERTIFIED]:
            out.append((True, f"{summary[NOT_CERTIFIED]} requirement(s) not certified (each must be)"))
        if summary[INCONCLUSIVE] and not gate.get("allow_inconclusive"):
            out.append((True, f"{summary[INCONCLUSIVE]} requirement(s) inconclusive (allow with --certkit-allow-inconclusive)"))
        if not any(failed for failed, _ in out):
            out.append((False, f"all {summary[CERTIFIED]} evaluated requirement(s) certified"))
    if baseline is not None:
        if comparison is None:
            out.append((True, f"the comparison with the baseline {baseline} failed"))
        else:
            regressions, removed = len(comparison["regressions"]), len(comparison["removed"])
            out.append((bool(regressions), f"{regressions} regression(s) against the baseline {baseline}" if regressions else
                        f"no regression against the baseline {baseline}"))
            if removed:
                allowed = gate.get("allow_removed")
                out.append((not allowed, f"{removed} requirement(s) of the baseline not in this run (removed, renamed or deselected; "
                            + ("allowed by --certkit-allow-removed)" if allowed else "allow with --certkit-allow-removed)")))
    return out


def shard_rules(summary: dict, shard: dict) -> list[tuple[bool, str]]:
    """The rules of one shard's gate (``shard``: the results' ``run.shard``, K of N): errors in its share, stated with
    the share's size; the rules over the whole suite (pass rate, every requirement certified, regressions, removed
    requirements) are the merge's, and the sentence says so."""
    where = f"shard {shard.get('index')}/{shard.get('total')}: {summary['requirements']} requirements, {summary[ERROR]} errors"
    return [(bool(summary[ERROR]), f"{where}; the pass-rate gate is decided by `certkit merge` of the {shard.get('total')} shards")]


def decide(summary: dict, rule_list: list[tuple[bool, str]]) -> tuple[str, str]:
    """``(gate, reason)``: INCOMPLETE when the run did not finish (``summary["incomplete"]`` lists why), FAILED
    when a rule failed, else PASSED; the reason, ``"<GATE>: "`` and the sentences that decided it, is the one
    sentence the terminal, results, report and JUnit all show."""
    failing = [text for failed, text in rule_list if failed]
    if summary.get("incomplete"):
        gate, said = INCOMPLETE, ["the run did not finish (" + "; ".join(summary["incomplete"]) + ")"] + failing
    elif failing:
        gate, said = FAILED, failing
    else:
        gate, said = PASSED, [text for _, text in rule_list]
    return gate, f"{gate.upper()}: " + "; ".join(said)


def decide_document(document: dict, comparison: dict | None = None, baseline: str | None = None) -> str:
    """Decide a results document's gate in place and return it: ``summary.gate`` and ``summary.gate_reason`` from
    :func:`rules` over its summary, its ``run.gate`` settings and the comparison with ``baseline`` (None: none was;
    ``comparison`` None with a baseline: the comparison failed), or from :func:`shard_rules` for a shard's document
    (``run.shard`` set). The plugin (one run, one shard) and ``certkit merge`` both decide through here."""
    summary, run = document["summary"], document.get("run") or {}
    if run.get("shard"):
        rule_list = shard_rules(summary, run["shard"])
    else:
        rule_list = rules(summary, run.get("gate") or {}, comparison, baseline)
    summary["gate"], summary["gate_reason"] = decide(summary, rule_list)
    return summary["gate"]
