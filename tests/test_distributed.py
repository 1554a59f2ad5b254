"""Multi-process training and crash recovery, on the CPU with gloo."""
import json
import os
import signal
import subprocess
import sys
import time

import torch

from test_train_and_cli import run, write_config


def train_cmd(config, *extra, nproc=1):
    if nproc == 1:
        return [sys.executable, "-m", "vidm", "train", "vae", "--config", str(config), *extra]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "vidm", "train", "vae", "--config", str(config), *extra]


def env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "VIDM_DEVICE": "cpu"}


def final_state(out):
    return torch.load(out / "vae" / "train_state.pt", weights_only=True)


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path):
    # float32: under bf16 autocast, a batch split in two rounds its sums differently
    one, two, start = tmp_path / "one", tmp_path / "two", tmp_path / "start"
    subprocess.run(train_cmd(write_config(tmp_path, "vae", one, steps=3, precision="float32")), check=True,
                   env=env(), capture_output=True)
    subprocess.run(train_cmd(write_config(tmp_path, "vae", two, steps=3, precision="float32"), nproc=2),
                   check=True, env=env(), capture_output=True)
    # the weights both runs started from: the same run with a learning rate of 0 leaves them as they were
    assert run("train", "vae", "--config", write_config(tmp_path, "vae", start, steps=1, lr=0.0,
                                                         precision="float32")) == 0
    a, b, initial = final_state(one), final_state(two), final_state(start)["model"]
    assert a["step"] == b["step"] == 3
    for name, value in a["model"].items():
        torch.testing.assert_close(value, b["model"][name], atol=1e-5, rtol=1e-4)
    unmoved = [name for name, value in a["model"].items() if torch.allclose(value, initial[name])]
    assert not unmoved  # three steps changed every weight
    log = [json.loads(line) for line in (two / "vae" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 3  # only rank 0 logs


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    steps = 16
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    subprocess.run(train_cmd(write_config(tmp_path, "vae", straight, steps=steps, save_every=4)), check=True,
                   env=env(), capture_output=True)
    config = write_config(tmp_path, "vae", crashed, steps=steps, save_every=4)
    proc = subprocess.Popen(train_cmd(config), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = crashed / "vae" / "train_state.pt"
    deadline = time.time() + 120
    while not state.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = final_state(crashed)["step"]
    assert 0 < killed_at < steps, killed_at  # it really died part-way
    log = crashed / "vae" / "log.jsonl"
    lines_before = len(log.read_text().splitlines())
    subprocess.run(train_cmd(config, "--resume"), check=True, env=env(), capture_output=True)
    # the resumed process ran the steps after the checkpoint, once each: not a run from step 0 again
    resumed = [json.loads(line)["step"] for line in log.read_text().splitlines()[lines_before:]]
    assert resumed == list(range(killed_at + 1, steps + 1)), (killed_at, resumed)
    a, b = final_state(straight), final_state(crashed)
    assert a["step"] == b["step"] == steps
    for part in ("model", "ema", "optimizer"):
        if part == "optimizer":
            for k, v in a[part]["state"].items():
                torch.testing.assert_close(v["exp_avg"], b[part]["state"][k]["exp_avg"], atol=0, rtol=0)
            continue
        for name in a[part]:
            torch.testing.assert_close(a[part][name], b[part][name], atol=0, rtol=0)
