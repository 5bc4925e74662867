"""The live dashboard: `python -m jaxplay.studies serve --workdir W` (or `--store URL`).

A read-only web app over a store while any number of sweeps write to it: every study with its
status, best value and lineage tree; a study page that follows the study as it trains (running
trials with step, speed and ETA, new evaluations drawn without a reload) and holds what the
report holds (axis, isolation and curve plots, best-of-k, diagnostics with their actions, caveats,
the trials table), with each point's trial on hover; two studies compared with the verdict of
`studies compare`. Its script and Plotly's bundle ship with the installed packages: it works
offline.

    from jaxplay.dashboard import Dashboard
    server = Dashboard('sqlite:////path/jaxplay.db', port=0)   # 0: any free port
    print(server.url); server.serve_forever()
"""

from __future__ import annotations

from jaxplay.dashboard.server import Dashboard

__all__ = ["Dashboard"]
