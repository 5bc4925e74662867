"""The playbook's eyes on a study: axis and isolation plots, curves, diagnostics, the HTML report.

Everything here reads the store only (`study.load`), so it works on finished studies, running
ones and studies written by other hosts.
"""
