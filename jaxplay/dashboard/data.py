"""What the dashboard's plots and live panel show, as JSON: the data the report's plots draw
(jaxplay.analysis.plots), with each point's trial and hyperparameters for hovering, and where each
running trial is.

Every string in it is HTML-escaped here, as the report escapes its pages: Plotly renders titles,
tick labels and hover labels as a small subset of HTML, and the page script sets the rest as HTML
too, so user text (study, hyperparameter and metric names, categorical values, errors) never
becomes markup.
"""

from __future__ import annotations

import datetime as dt
import html
import math

import numpy as np

from jaxplay.analysis import plot_data as plots
from jaxplay.analysis.diagnostics import SPIKE_FACTOR, SPIKE_WINDOW
from jaxplay.analysis.study import StudyData, TrialData
from jaxplay.values import fmt

TOP = 3  # the best trials, coloured in the curves and starred in the axis plots, as in the report


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _number(value) -> float | None:
    """A JSON number, or None for NaN, inf and missing values (JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _series(values: np.ndarray) -> list:
    return [_number(v) for v in values]


def hover(study: StudyData, t: TrialData, *extra: str) -> str:
    """A trial's hover label: its number, status, result and every hyperparameter it set."""
    if t.feasible:
        result = f"best {study.objective} {fmt(t.best_value)} at step {t.best_step}"
    else:
        result = (t.error or "").strip().splitlines()[-1:] or [""]
        result = result[0][:120]
    lines = [f"<b>trial {t.index}</b> ({_e(t.status)})", _e(result), *extra]
    lines += [f"{_e(path)} = {_e(fmt(value))}" for path, value in t.params.items()]
    return "<br>".join(line for line in lines if line)


def payload(study: StudyData, now: dt.datetime | None = None) -> dict:
    """Everything the study page draws and lists, for a JSON response."""
    try:
        cap = plots.infeasible_cap(study)
    except plots.NothingToPlot:
        cap = None
    top = [t.index for t in study.feasible[:TOP]]
    near = plots.near_best(study)
    return {
        "name": _e(study.name),
        "objective": _e(study.objective),
        "mode": _e(study.mode),
        "counts": {s: sum(t.status == s for t in study.trials) for s in _STATUSES},
        "evaluations": sum(len(t.curve(study.objective)[0]) for t in study.trials),
        "top": top,
        "cap": cap,
        "running": running(study, now),
        # Each trial's hover label once: every point names its trial.
        "text": {t.index: hover(study, t) for t in study.trials},
        "near_best": _near_best(near),
        "axis": [_axis(study, p, cap, top, near) for p in study.space],
        "isolation": [_isolation(study, p) for p in study.space.by_role("scientific")],
        "curves": _curves(study, top),
        "best_step": _best_step(study, top),
        "grad_norms": _grad_norms(study),
        "step_losses": _step_losses(study),
        "best_of_k": _best_of_k(study),
    }


_STATUSES = ("completed", "infeasible", "failed", "running", "pending")


def running(study: StudyData, now: dt.datetime | None = None) -> list[dict]:
    """Each running trial: its step of how many, its training speed over the last timed period,
    the time left at that speed, and how long ago it last logged (a stale one lost its worker)."""
    now = now or dt.datetime.now(dt.UTC)
    by_index = {t["index"]: t for t in study.record["trials"]}
    out = []
    for t in study.trials:
        if t.status != "running":
            continue
        entry = by_index.get(t.index, {})
        steps = study.run_length(t)
        step, rate = entry.get("step"), entry.get("steps_per_second")
        left = (steps - step) / rate if rate and step is not None and steps else None
        logged = entry.get("step_at") or entry.get("started_at")
        ago = (now - dt.datetime.fromisoformat(logged)).total_seconds() if logged else None
        out.append(
            {
                "trial": t.index,
                "params": _e(", ".join(f"{p}={fmt(v)}" for p, v in t.params.items())),
                "step": step,
                "steps": steps,
                "steps_per_second": _number(rate),
                "eta_s": _number(left),
                "since_s": _number(ago),
                "worker": _e(entry.get("worker") or "-"),
            }
        )
    return out


def _near_best(near: plots.NearBest | None) -> dict | None:
    """The trials near the best (playbook item 36: how many points are in the good region), the
    band they lie in and how its width epsilon was derived."""
    if near is None:
        return None
    return {
        "best": near.best,
        "bound": near.bound,
        "epsilon": near.epsilon,
        "epsilon_text": _e(f"{near.epsilon:.2g}"),
        "text": _e(near.describe()),
        "measured": near.measured,
        "trials": list(near.trials),
    }


def _axis(
    study: StudyData, p, cap: float | None, top: list[int], near: plots.NearBest | None
) -> dict:
    """An axis plot (playbook Fig 1): each finished trial's best objective against one searched
    hyperparameter; infeasible trials at the cap, the best ones starred, those near the best
    apart."""
    trials = [t for t in study.finished if p.path in t.params]
    categorical = p.space in ("discrete", "categorical")
    categories = plots.categories_of(p, trials) if categorical else None
    close = set(near.trials) if near else set()
    points = []
    if cap is not None:
        xs = plots.x_positions(p, trials, categories) if trials else []
        for t, x in zip(trials, xs):
            kind = (
                "top" if t.index in top
                else "near" if t.index in close
                else "feasible" if t.feasible
                else "infeasible"
            )  # fmt: skip
            y = t.best_value if t.feasible else cap
            points.append({"trial": t.index, "x": float(x), "y": y, "kind": kind})
    return {
        "path": _e(p.path),
        "role": _e(p.role),
        "log": p.scale == "log" and not categorical,
        "bounds": None if categorical else [p.min, p.max],
        "categories": None if categories is None else [_e(fmt(v)) for v in categories],
        "unfinished": len(study.trials) - len(study.finished),
        "near": sum(t.index in close for t in trials),
        "points": points,
    }


def _isolation(study: StudyData, p) -> dict:
    """An isolation plot (playbook Fig 2): the best trial per value or bucket of a scientific
    hyperparameter, the nuisance ones optimized away."""
    categorical = p.space in ("discrete", "categorical")
    points = []
    groups = plots.isolation_groups(study, p.path)
    for g in groups:
        best = g["best"]
        if best is None:
            continue
        infeasible = len(g["trials"]) - g["feasible"]
        note = f"best of {g['feasible']}" + (f" (+{infeasible} infeasible)" if infeasible else "")
        points.append(
            {
                "trial": best.index,
                "x": g["position"] if categorical else float(best.params[p.path]),
                "y": best.best_value,
                "label": _e(note),
                "text": hover(study, best, _e(f"{g['label']}: {note}")),
            }
        )
    nuisance = [q.path for q in study.space.by_role("nuisance")]
    return {
        "path": _e(p.path),
        "log": p.scale == "log" and not categorical,
        "categorical": categorical,
        "connect": p.space != "categorical",
        "categories": [_e(g["label"]) for g in groups] if categorical else None,
        "over": [_e(n) for n in nuisance],
        "points": points,
    }


def _curves(study: StudyData, top: list[int]) -> dict:
    """Every trial's training and validation curves (null where a value was NaN)."""
    train = plots.train_metric(study)
    trials = []
    for t in study.trials:
        entry = {"trial": t.index, "status": t.status,
                 "rank": top.index(t.index) if t.index in top else None}  # fmt: skip
        for key, metric in (("train", train), ("objective", study.objective)):
            steps, values = t.curve(metric) if metric else (np.zeros(0), np.zeros(0))
            entry[key] = {"steps": [int(s) for s in steps], "values": _series(values)}
        trials.append(entry)
    return {"train": train and _e(train), "objective": _e(study.objective), "trials": trials}


def _best_step(study: StudyData, top: list[int]) -> dict | None:
    """Each feasible trial's best step as a fraction of its train.steps against its best objective,
    and the playbook's 10% and 25% rules (item 51)."""
    try:
        points = plots.best_steps(study)
    except plots.NothingToPlot:
        return None
    return {
        "early": plots.EARLY_FRACTION,
        "late": plots.LATE_FRACTION,
        "counts": {z: sum(q["zone"] == z for q in points) for z in ("early", "late")},
        "points": [
            {
                "trial": q["trial"].index,
                "x": q["trial"].best_value,
                "y": q["fraction"],
                "step": int(q["step"]),
                "steps": int(q["steps"]),
                "kind": "top" if q["trial"].index in top else "feasible",
            }
            for q in points
        ],
    }


def _steps(steps: np.ndarray, values: np.ndarray) -> dict:
    return {"steps": [int(s) for s in steps], "values": _series(values)}


def _grad_norms(study: StudyData) -> dict | None:
    """The best trials' unclipped gradient norms against the step (every step's, else each
    period's median, 90th percentile, largest and mean), the histogram of the best per-step ones,
    the playbook's clipping threshold and the configured clip (items 82, 87)."""
    try:
        data = plots.grad_norms(study, TOP)
    except plots.NothingToPlot:
        return None
    trials = []
    for q in data["trials"]:
        t, periods = q["trial"], q["periods"]
        trials.append(
            {
                "trial": t.index,
                "label": _e(q["label"]),
                "per_step": q["per_step"] and _steps(*q["per_step"]),
                "periods": periods
                and {
                    "steps": [int(s) for s in periods["steps"]],
                    **{k: _series(periods[k]) for k in plots.PERIOD_GRAD_NORMS},
                },
                "threshold": _number(q["threshold"]),
                "clip": _number(q["clip"]),
                "clipped": _number(q["clipped"]),
            }
        )
    h = data["histogram"]
    return {
        "log": data["log"],
        "percentile": data["percentile"],
        "trials": trials,
        "histogram": h
        and {
            "trial": h["trial"].index,
            "edges": _series(h["edges"]),
            "counts": [int(c) for c in h["counts"]],
            "steps": h["steps"],
            "threshold": _number(h["threshold"]),
        },
    }


def _point(point: dict | None) -> dict | None:
    return point and {"step": int(point["step"]), "value": _number(point["value"])}


def _step_losses(study: StudyData) -> dict | None:
    """Every step's training loss of the trials that kept it (the early-instability probe, items
    83, 99), by learning-rate multiple, with the running median the diagnostic reads, where it
    rose and where diverged trials stopped."""
    try:
        points = plots.step_losses(study)
    except plots.NothingToPlot:
        return None
    return {
        "log": plots.step_loss_log(points),
        "window": SPIKE_WINDOW,
        "factor": SPIKE_FACTOR,
        "trials": [
            {
                "trial": q["trial"].index,
                "label": _e(q["label"]),
                "factor": _number(q["factor"]),
                "learning_rate": _number(q["learning_rate"]),
                "loss": _steps(q["steps"], q["values"]),
                "median": _steps(q["median_steps"], q["median"]),
                "rise": _point(q["rise"]),
                "stop": _point(q["stop"]),
            }
            for q in points
        ],
    }


def _best_of_k(study: StudyData) -> dict | None:
    """Best-of-k boxes (playbook item 79), for a search with enough finished trials."""
    if not len(study.space) or len(study.finished) < plots.SAMPLING_MIN_TRIALS:
        return None
    try:
        samples = plots.best_of_k(study)
    except plots.NothingToPlot:
        return None
    ks = list(samples)
    quantiles = {k: np.percentile(samples[k], [0, 25, 50, 75, 100]) for k in ks}
    return {
        "k": ks,
        **{
            name: [float(quantiles[k][i]) for k in ks]
            for i, name in enumerate(("min", "q1", "median", "q3", "max"))
        },
        "best": study.feasible[0].best_value,
        "finished": len(study.finished),
    }
