"""bf16 autocast where the CPU has bf16 units, threads sized to the idle cores, and the CPU-hour budget."""
import json

import pytest
import torch

from vidm import precision, threads
from vidm.errors import VidmError
from vidm.train import train

from test_train_and_cli import run, write_config

CPU = torch.device("cpu")


def test_bf16_flags_are_read_from_cpuinfo():
    x86 = "processor : 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 amx_tile\nprocessor : 1\n"
    assert precision.cpu_bf16_flags(x86) == {"avx512_bf16"}
    assert precision.cpu_bf16_flags("flags : fpu sse2 avx2 fma\n") == set()
    assert precision.cpu_bf16_flags("Features\t: fp asimd bf16 i8mm\n") == {"bf16"}
    assert precision.cpu_bf16_flags("") == set()


def test_auto_precision_follows_the_cpu_and_says_why(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: {"amx_bf16"})
    assert precision.resolve("auto", CPU) == (True, "bf16 autocast: this CPU has amx_bf16")
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: set())
    use, why = precision.resolve("auto", CPU)
    assert not use and why.startswith("float32: this CPU") and "no bf16 units" in why
    assert precision.resolve("float32", CPU)[0] is False
    use, why = precision.resolve("bf16", CPU)  # forced: honoured, with the warning in the reason
    assert use and "emulated" in why
    with pytest.raises(VidmError, match="precision must be one of auto, bf16, float32"):
        precision.resolve("fp16", CPU)


def test_an_unknown_precision_in_a_config_is_a_one_line_error(tmp_path, capsys):
    assert run("train", "vae", "--config", write_config(tmp_path, "vae", tmp_path / "r", precision="half")) == 2
    assert "precision must be one of auto, bf16, float32, got 'half'" in capsys.readouterr().err


def test_bf16_training_learns_like_float32(tmp_path):
    """The same tiny run in both precisions: losses agree to bf16's resolution, and both fall."""
    logs = {}
    for name in ("bf16", "float32"):
        out = tmp_path / name
        assert run("train", "vae", "--config", write_config(tmp_path, "vae", out, steps=12, precision=name)) == 0
        logs[name] = [json.loads(line)["loss"] for line in (out / "vae" / "log.jsonl").read_text().splitlines()]
    assert logs["bf16"] != logs["float32"]  # autocast really changed the arithmetic
    for a, b in zip(logs["bf16"], logs["float32"]):
        assert a == pytest.approx(b, rel=0.05)
    assert logs["bf16"][-1] < logs["bf16"][0] and logs["float32"][-1] < logs["float32"][0]


def test_idle_cores_are_at_least_one_and_at_most_the_usable_ones(monkeypatch):
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)  # this process may run on 2 of the 8
    monkeypatch.setattr(threads, "busy_and_total", iter([(0, 0), (800, 800)]).__next__)  # every core busy
    assert threads.idle_cores(probe_seconds=0) == 1
    monkeypatch.setattr(threads, "busy_and_total", iter([(0, 0), (0, 800)]).__next__)  # 8 idle cores
    assert threads.idle_cores(probe_seconds=0) == 2
    monkeypatch.setattr(threads, "busy_and_total", lambda: None)  # no /proc/stat: the usable cores
    assert threads.idle_cores(probe_seconds=0) == 2


def test_idle_cores_leave_out_the_cores_other_processes_keep_busy(monkeypatch):
    readings = iter([(1000, 4000), (1000 + 150, 4000 + 200)])  # 2 cores: 150 of 200 jiffies busy
    monkeypatch.setattr(threads, "busy_and_total", lambda: next(readings))
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    assert threads.idle_cores(probe_seconds=0) == 1  # 1.5 busy cores round to 2: still one thread
    readings = iter([(0, 0), (10, 200)])
    monkeypatch.setattr(threads, "busy_and_total", lambda: next(readings))
    assert threads.idle_cores(probe_seconds=0) == 2


def test_omp_num_threads_wins_over_the_probe(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.command_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "")
    monkeypatch.setattr(threads, "idle_cores", lambda: 1)
    assert threads.command_threads() == 1


def test_a_cpu_hour_budget_stops_training_and_is_logged_and_resumed(tmp_path):
    from vidm.train import load_train_config

    out = tmp_path / "r"
    cfg = load_train_config(str(write_config(tmp_path, "vae", out, steps=1000, cpu_hours=1e-9, log_every=2,
                                             save_every=500)))
    train(cfg, progress=False)
    log = [json.loads(line) for line in (out / "vae" / "log.jsonl").read_text().splitlines()]
    state = torch.load(out / "vae" / "train_state.pt", weights_only=True)
    assert [r["step"] for r in log] == [2] and state["step"] == 2  # stopped, and saved where it stopped
    assert log[0]["cpu_hours"] > 0 and state["cpu_seconds"] == pytest.approx(log[0]["cpu_hours"] * 3600, rel=0.5)
    more = load_train_config(str(write_config(tmp_path, "vae", out, steps=4, log_every=2, save_every=500)))
    train(more, resume=True, progress=False)
    log = [json.loads(line) for line in (out / "vae" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4] and log[1]["cpu_hours"] > log[0]["cpu_hours"]
