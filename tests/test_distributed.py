"""Data-parallel training (evsim.training.distributed): one step on 2 gloo ranks on 127.0.0.1
equals one step of a single process on the whole mini-batch, in float64."""

from __future__ import annotations

import dataclasses
import os
import socket

import numpy as np
import pytest

torch = pytest.importorskip("torch")
dist = torch.distributed
pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with gloo is not available in this torch build")

TIMESTEPS = 6
BATCH = 5  # an odd mini-batch: the ranks take 3 and 2 samples


def _case(nmnist_root, dropout: float = 0.0):
    """LeNet in float64 on five real recordings (their frames need no random draws, so that
    both runs see the same inputs) and an SGD optimizer."""
    from evsim.datasets.samples import load_samples
    from evsim.training.architectures import build
    from evsim.training.network import SpikingNetwork

    samples = load_samples("nmnist", nmnist_root, "test", limit=BATCH)
    graph = dataclasses.replace(build("lenet", samples.input_shape, TIMESTEPS), encoding=samples.encoding)
    torch.manual_seed(0)
    network = SpikingNetwork(graph, dropout=dropout).to(torch.float64)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.5, weight_decay=5e-4)
    return network, samples, optimizer


def _one_step(network, samples, optimizer, distributed=None):
    from evsim.training.trainer import run_epoch

    return run_epoch(network, samples, TIMESTEPS, BATCH, np.random.default_rng([0, 0]), optimizer,
                     distributed=distributed)


def _rank(rank: int, world: int, port: int, nmnist_root, out: str) -> None:
    """One rank, as torchrun would start it."""
    from evsim.training.distributed import join

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    distributed = join("cpu")
    finished = False
    try:
        network, samples, optimizer = _case(nmnist_root)
        distributed.wrap(network)
        result = _one_step(network, samples, optimizer, distributed)
        torch.save({"weights": [w.detach().clone() for w in network.weights], "result": dataclasses.asdict(result)},
                   os.path.join(out, f"rank{rank}.pt"))
        finished = True
    finally:
        distributed.close(finished)
    # the results are written and the group is left: skip the interpreter's teardown, where gloo's
    # threads have once aborted the process (SIGABRT) after a complete, correct run
    os._exit(0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_one_step_on_two_ranks_equals_one_step_on_the_whole_batch(nmnist_root, tmp_path):
    torch.multiprocessing.spawn(_rank, args=(2, _free_port(), nmnist_root, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]

    network, samples, optimizer = _case(nmnist_root)
    before = [w.detach().clone() for w in network.weights]
    single = _one_step(network, samples, optimizer)

    for a, b in zip(ranks[0]["weights"], ranks[1]["weights"]):
        assert torch.equal(a, b)  # the all-reduce gave both ranks the same gradient
    for got, want, start in zip(ranks[0]["weights"], network.weights, before):
        assert not torch.equal(want, start)  # the step moved every weight
        torch.testing.assert_close(got, want.detach(), rtol=1e-10, atol=1e-13)
    result = ranks[0]["result"]
    assert result["samples"] == single.samples == BATCH  # each sample once, on one rank
    assert result["accuracy"] == single.accuracy
    for key in ("loss", "synops", "input_events"):
        assert result[key] == pytest.approx(getattr(single, key), rel=1e-12)


def test_distributed_without_torchrun_says_how_to_start_it(monkeypatch):
    from evsim.errors import InputError
    from evsim.training.distributed import join

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(InputError, match="torchrun --nproc-per-node N -m evsim.cli train"):
        join("cpu")


def test_a_rank_takes_strided_samples_and_codes_with_its_own_generator():
    from evsim.training.distributed import Distributed

    ranks = [Distributed(rank, 3, rank, "gloo", "cpu") for rank in range(3)]
    batch = np.arange(10, 18)
    parts = [r.batch(batch) for r in ranks]
    assert sorted(np.concatenate(parts).tolist()) == batch.tolist()  # each sample on exactly one rank
    assert parts[1].tolist() == [11, 14, 17]
    draws = [r.generator(np.random.default_rng(7)).random() for r in ranks]
    assert len(set(draws)) == 3  # one shared seed, a different stream per rank
    assert draws[0] == ranks[0].generator(np.random.default_rng(7)).random()


@pytest.mark.slow
def test_a_distributed_run_writes_its_checkpoint_and_resumes_from_it(test_data_dir, tmp_path, monkeypatch):
    """One rank in this process (a process group of one), as `evsim train --distributed --resume` runs."""
    from evsim.training.trainer import TrainConfig, train

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    config = TrainConfig(arch="lenet", dataset="mnist", data=test_data_dir / "mnist", out=tmp_path / "m.npz",
                         epochs=1, timesteps=3, batch_size=8, limit=16, test_limit=8, device="cpu", distributed=True)
    lines: list[str] = []
    first = train(config, log=lines.append, progress=False)
    assert not dist.is_initialized()  # the group is left when training ends
    assert any(line.startswith("distributed: 1 ranks (gloo)") for line in lines)
    assert (tmp_path / "m.npz").is_file() and (tmp_path / "m.npz.checkpoint.pt").is_file()
    resumed = train(dataclasses.replace(config, epochs=2, resume=True), log=lines.append, progress=False)
    assert "resumed from" in " ".join(lines)
    assert [h["epoch"] for h in resumed] == [1, 2] and resumed[0] == first[0]
    assert torch.load(tmp_path / "m.npz.checkpoint.pt", weights_only=True)["epoch"] == 2
