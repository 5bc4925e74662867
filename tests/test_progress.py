"""What a running study prints: the speed and the ETAs measure training, not compilation."""

from jaxplay.driver import progress as progress_lib


def test_the_first_period_says_compiling_and_the_etas_measure_training(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(progress_lib.time, "perf_counter", lambda: clock[0])
    lines = []
    p = progress_lib.Progress("val/error", "min", lines.append)
    p.start([0], [{"optimizer.learning_rate": 0.01}], remaining=12)
    metrics = {0: {"val/error": 0.5, "train/batch_loss": 1.0}}
    clock[0] = 60.0  # the first period: a minute of compiling, then 150 steps
    p.period(150, 1500, metrics)
    assert lines[-1].endswith("compiling: speed and ETA from the next period")
    assert "steps/s" not in lines[-1] and "study" not in lines[-1]
    clock[0] = 60.1  # 150 steps in 0.1 s: 1500 steps/s
    p.period(300, 1500, metrics)
    # This trial: 1200 steps left at 1500 steps/s; each of the 11 after it: 1500 steps, 1 s.
    assert "1,500 steps/s" in lines[-1]
    assert lines[-1].endswith(
        f"ETA {progress_lib.duration(0.8)} (study {progress_lib.duration(0.8 + 11)})"
    )
    # Once units have finished, a trial's time is their median per trial: the first unit of a
    # program (its compilation) does not inflate it.
    p.finished_unit()  # the first trial: 60.1 s, compilation included
    for seconds in (1.0, 1.2):
        p.start([1], [{}], remaining=10)
        clock[0] += seconds
        p.finished_unit()
    p.start([3], [{}], remaining=9)
    clock[0] += 5.0
    p.period(150, 1500, metrics)
    clock[0] += 0.1
    p.period(300, 1500, metrics)
    assert lines[-1].endswith(
        f"ETA {progress_lib.duration(0.8)} (study {progress_lib.duration(0.8 + 8 * 1.2)})"
    )
