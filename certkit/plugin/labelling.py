"""``--certkit-label-sample N``: a uniform random sample of the noisy answers a run drew, written for people to label.

An oracle's error bound is only as good as the answers it was measured on, and a certificate's answers are the
audited model's *noisy* answers on the audit's cases. This option keeps a uniform random sample of N of them
(:class:`certkit.calibration.AnswerSample`: bottom-N of a hash of each answer's stream and index, so the same answers
whatever the order or the worker; from each stream's first chunk, which every requirement draws before it looks at a
label) with their case, noise seed, sample index and oracle label, and writes it to
``--certkit-label-sample-file`` (default ``reports/label-sample.jsonl``) in random order. People fill in each line's
``label`` from the top; ``certkit calibrate FILE --oracle module:attr --outcome A`` turns it into the bound.

Under xdist each worker keeps its own sample of the answers it drew and hands it to the controller with its other
output (``workeroutput``); the controller merges them into the sample of all answers (exact for bottom-N samples)
and writes the one file. Answers the count cache already holds are not drawn again, so they are not in the sample:
``--certkit-cache-dir none`` samples every answer the requirements read. Imports no numpy or model code.
"""

from __future__ import annotations

import pytest

from .settings import from_cli_or_ini, path_setting, shown

#: where an xdist worker hands its sample to the controller (``config.workeroutput``)
WORKER_KEY = "certkit_label_sample"


class LabelSampling:
    """The run's label sample (``sample``, an :class:`~certkit.calibration.AnswerSample`) and the file it goes to
    (``path``): merges the workers' samples on the controller and writes the file when the session ends."""

    def __init__(self, sample, path):
        self.sample, self.path = sample, path
        self.written: str | None = None
        self.error: str | None = None

    @pytest.hookimpl(optionalhook=True)  # an xdist hook
    def pytest_testnodedown(self, node, error) -> None:
        """Fold a finished worker's sample into the controller's."""
        part = getattr(node, "workeroutput", {}).get(WORKER_KEY)
        if part is not None:
            self.sample.merge(part["records"], part["drawn"])

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """A worker hands its sample to the controller; the controller (or the only process) writes the file, and an
        error writing it is reported in the terminal, not raised (the results are written all the same)."""
        workeroutput = getattr(session.config, "workeroutput", None)
        if workeroutput is not None:
            workeroutput[WORKER_KEY] = {"records": self.sample.records(), "drawn": self.sample.drawn}
            return
        try:
            self.sample.write(self.path)
            self.written = shown(self.path, session.config)
        except OSError as exc:
            self.error = f"could not write the label sample {shown(self.path, session.config)}: {exc.strerror or exc}"

    def pytest_terminal_summary(self, terminalreporter) -> None:
        """One line: how many answers were sampled of how many drawn, where they are, and what to do next."""
        tr = terminalreporter
        if self.error:
            tr.write_line(f"certkit: {self.error}", red=True)
            return
        if self.written is None:
            return
        kept = len(self.sample.records())
        line = (f"certkit label sample: {kept} of the {self.sample.drawn} noisy answers in the streams' first {self.sample.prefix} "
                f"(drawn before any test looked at a label), in random order, written to {self.written}; fill in each line's "
                f"\"label\" from the top, then `certkit calibrate {self.written} --oracle module:attr --outcome A`")
        if kept < self.sample.size:
            line += (f" (fewer than {self.sample.size}: answers the count cache held were not drawn again, so run with "
                     "--certkit-cache-dir none; or more cases)")
        tr.write_line(line)


LABEL_SAMPLE = pytest.StashKey[LabelSampling]()


def register(config: pytest.Config) -> None:
    """With ``--certkit-label-sample N`` (or the ``certkit_label_sample`` ini key), on every process: keep a sample of N
    answers and register its :class:`LabelSampling`. ``pytest.UsageError`` where the file is ``none``."""
    size = from_cli_or_ini(config, "label_sample", int, None)
    if size is None:
        return
    path = path_setting(config, "label_sample_file")
    if path is None:
        raise pytest.UsageError("certkit: --certkit-label-sample needs a file to write: --certkit-label-sample-file PATH (not none)")
    from ..calibration import AnswerSample  # no numpy: the plugin stays light

    plugin = LabelSampling(AnswerSample(size), path)
    config.stash[LABEL_SAMPLE] = plugin
    config.pluginmanager.register(plugin, "certkit-label-sample")


def answer_sink(config: pytest.Config):
    """What a :class:`~certkit.Smoothed` of this run offers its answers to (its ``answer_sink``): the label sample's
    :meth:`~certkit.calibration.AnswerSample.offer`, or None without ``--certkit-label-sample``."""
    plugin = config.stash.get(LABEL_SAMPLE, None)
    return None if plugin is None else plugin.sample.offer
