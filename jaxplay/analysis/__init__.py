"""The playbook's eyes on a study: axis and isolation plots, curves, diagnostics, the HTML report.

Everything here reads the store only (`load`), so it works on finished studies, running ones and
studies written by other hosts. Each `python -m jaxplay.studies` command is one call here:

    from jaxplay import analysis
    study = analysis.load('runs/mnist1d_mlp')          # or, with no workdir:
    # study = analysis.load(store='postgresql+psycopg://...', study=NAME)
    for finding in analysis.diagnose(study): print(finding.title, '->', finding.action)
    analysis.report('runs/mnist1d_mlp')                 # writes the HTML report, returns its path
    print(analysis.compare(round1, round2)); print(analysis.export(study, 'csv'))
"""

from __future__ import annotations

import pathlib

from jaxplay.analysis import diagnostics
from jaxplay.analysis.study import StudyData, TrialData, load
from jaxplay.analysis.tables import compare, export

__all__ = ["StudyData", "TrialData", "load", "diagnose", "figures", "report", "compare", "export"]


def diagnose(study: StudyData) -> list:
    """The playbook's automatic checks on a study, warnings first (see analysis.diagnostics)."""
    return diagnostics.diagnose(study)


def figures(study: StudyData) -> list:
    """(section, caption, matplotlib Figure) for every plot of the study (see analysis.plots)."""
    from jaxplay.analysis import plots  # matplotlib: imported only when drawing

    return plots.figures(study)


def report(
    workdir: str | pathlib.Path | None = None,
    *,
    store: str | None = None,
    study: str | None = None,
    path: str | pathlib.Path | None = None,
) -> pathlib.Path:
    """Writes the study's self-contained HTML report and returns its path (default: in the workdir,
    or the current directory when only a store URL is given)."""
    from jaxplay.analysis import html_report as report_lib  # matplotlib, as for figures

    data = load(workdir, store=store, study=study)
    if path is None:
        path = pathlib.Path(workdir) if workdir is not None else pathlib.Path.cwd()
    return report_lib.write_report(data, path)
