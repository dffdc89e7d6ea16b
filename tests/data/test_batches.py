import pytest
import torch

from lit_d2l.data import EpochSampler, TensorBatches


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
@pytest.mark.parametrize("num_examples", [1, 10, 13, 64])
def test_ddp_shards_are_equal_disjoint_up_to_padding_and_covering(world_size: int, num_examples: int) -> None:
    shards = []
    for rank in range(world_size):
        sampler = EpochSampler(num_examples, shuffle=True, seed=3, rank=rank, world_size=world_size)
        sampler.set_epoch(5)
        shards.append(sampler.indices())
    assert len({len(s) for s in shards}) == 1, "every rank gets the same number of examples"
    everything = torch.cat(shards)
    assert set(everything.tolist()) == set(range(num_examples)), "the shards cover every example"
    padding = len(everything) - num_examples
    assert 0 <= padding < world_size, "only the documented wrap-around padding repeats examples"
    assert len(torch.unique(everything)) == num_examples


@pytest.mark.parametrize("world_size", [2, 3, 4])
@pytest.mark.parametrize("num_examples", [24, 60])  # multiples of W: no padding; 60 ends on a partial batch
def test_the_ranks_batches_of_a_step_are_one_process_batch_of_the_global_size(world_size, num_examples) -> None:
    """DDP parity: with per-rank batch G / W, step k's batches over all ranks are the one-process batch k."""
    X = torch.arange(num_examples)
    global_batch = 4 * world_size
    one = list(TensorBatches((X,), global_batch, shuffle=True, seed=7))
    shard = TensorBatches
    ranks = [list(shard((X,), 4, shuffle=True, seed=7, rank=r, world_size=world_size)) for r in range(world_size)]
    assert {len(batches) for batches in ranks} == {len(one)}
    for k, (batch,) in enumerate(one):
        union = torch.cat([ranks[r][k][0] for r in range(world_size)])
        assert sorted(union.tolist()) == sorted(batch.tolist())


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("num_examples", [7, 10, 101])
def test_evaluation_shards_count_every_example_exactly_once(world_size: int, num_examples: int) -> None:
    shards = []
    for rank in range(world_size):
        batches = TensorBatches((torch.arange(num_examples),), 4, rank=rank, world_size=world_size, pad=False)
        shards += [i for (b,) in batches for i in b.tolist()]
    assert sorted(shards) == list(range(num_examples))


def test_each_epoch_draws_a_new_permutation_the_same_on_every_call() -> None:
    sampler = EpochSampler(100, shuffle=True, seed=0)
    sampler.set_epoch(0)
    first = sampler.indices()
    assert torch.equal(first, sampler.indices())
    sampler.set_epoch(1)
    assert not torch.equal(first, sampler.indices())
    assert not torch.equal(first, torch.arange(100))


def test_same_seed_same_batches() -> None:
    X, y = torch.randn(50, 2), torch.randn(50, 1)
    a = [b[0] for b in TensorBatches((X, y), 8, shuffle=True, seed=1)]
    b = [b[0] for b in TensorBatches((X, y), 8, shuffle=True, seed=1)]
    c = [b[0] for b in TensorBatches((X, y), 8, shuffle=True, seed=2)]
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(a, c, strict=True))


def test_batches_keep_rows_aligned_and_the_last_batch_holds_the_remainder() -> None:
    X = torch.arange(10).reshape(10, 1).float()
    y = X * 2
    batches = TensorBatches((X, y), 4, shuffle=True)
    assert len(batches) == 3 and [len(xb) for xb, _ in batches] == [4, 4, 2]
    for xb, yb in batches:
        assert torch.equal(yb, xb * 2)


def test_unshuffled_batches_are_views_in_order() -> None:
    X = torch.arange(10)
    batches = list(TensorBatches((X,), 4))
    assert [b[0].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert batches[0][0].data_ptr() == X.data_ptr()


def test_mismatched_lengths_are_rejected() -> None:
    with pytest.raises(ValueError, match="same first dimension"):
        TensorBatches((torch.zeros(3), torch.zeros(4)), 2)


def test_dataloader_path_serves_the_same_examples_with_the_same_transform() -> None:
    from lit_d2l.data import SyntheticRegressionData

    fast = SyntheticRegressionData(num_train=50, batch_size=8)
    standard = SyntheticRegressionData(num_train=50, batch_size=8, loader="dataloader")
    loader = standard.train_dataloader()
    assert isinstance(loader, torch.utils.data.DataLoader)
    rows = torch.cat([X for X, _ in loader])
    reference = fast.splits["train"][0]
    assert rows.shape == reference.shape
    assert torch.equal(rows[rows[:, 0].argsort()], reference[reference[:, 0].argsort()])
    assert [len(X) for X, _ in standard.val_dataloader()] == [8] * 125
