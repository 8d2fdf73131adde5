"""Two CPU processes under torchrun (gloo): DistributedDataParallel replicas end up identical,
and match a single-process run of the same global batch.

The launch leaves nothing to the machine: the rendezvous and gloo use the loopback interface
(``--local-addr 127.0.0.1``, ``GLOO_SOCKET_IFNAME=lo``) instead of whatever the host name
resolves to, and :func:`init_distributed` / :func:`shutdown_distributed` synchronise joining and
leaving, so that no rank closes its connections while the other still uses them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from hybridzoo.arena.train import RunSpec, TrainSettings, train_run

SPEC = {
    "pattern": "AF",
    "task": "mqar",
    "task_params": {"vocab_size": 32, "seq_len": 16, "num_kv_pairs": 2},
    "hidden_size": 16,
    "layer_options": {
        "attention_num_heads": 2,
        "attention_head_dim": 8,
        "attention_window_size": 16,
    },
}
SETTINGS = {
    "steps": 6,
    "batch_size": 16,
    "eval_every": 3,
    "eval_examples": 32,
    "lr": 1e-2,
    "target_accuracy": None,
}

WORKER = """
import sys, torch
from hybridzoo.arena.distributed import init_distributed, shutdown_distributed
from hybridzoo.arena.train import RunSpec, TrainSettings, train_run

out = sys.argv[1]
context = init_distributed("cpu")
assert context.world_size == 2, context
result, model = train_run(
    RunSpec(**{spec}), TrainSettings(**{settings}), context=context, progress=False,
    measure_latency=False,
)
torch.save({{"state": model.state_dict(), "result": result}}, f"{{out}}/rank{{context.rank}}.pt")
shutdown_distributed(context)
"""


def test_two_process_torchrun_replicas_agree(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER.format(spec=SPEC, settings=SETTINGS)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if Path("/sys/class/net/lo").exists():  # Linux: gloo on the loopback interface
        env["GLOO_SOCKET_IFNAME"] = "lo"
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)  # an outer launcher's variables must not leak into this one
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
        "--standalone", "--local-addr", "127.0.0.1", str(script), str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    assert rank0["state"].keys() == rank1["state"].keys()
    for key, value in rank0["state"].items():
        assert torch.equal(value, rank1["state"][key]), key
    # evaluation is summed over the ranks: both see the same held-out numbers
    for key in ("loss", "accuracy", "train_loss"):
        assert [r[key] for r in rank0["result"]["history"]] == [
            r[key] for r in rank1["result"]["history"]
        ]
    assert rank0["result"]["world_size"] == 2
    # each rank trained on its half of the same global batch: a single process agrees
    _, model = train_run(
        RunSpec(**SPEC), TrainSettings(**SETTINGS), progress=False, measure_latency=False
    )
    for key, value in model.state_dict().items():
        assert torch.allclose(value, rank0["state"][key], atol=1e-4), key
