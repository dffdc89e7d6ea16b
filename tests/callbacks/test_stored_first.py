"""A checkpoint file appears only once the values logged before it are in the store."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.plugins import TorchCheckpointIO

from lit_d2l.callbacks.stored_first import PENDING, _PendingIO, remove_leftovers
from lit_d2l.fit.run import run_configured
from tests.conftest import linear_fit_args


def test_an_epochs_checkpoint_is_put_in_place_once_its_values_are_stored(tracking_uri, client, experiment, monkeypatch):
    # Lightning saves epoch 0's checkpoint before it hands the epoch's train/loss_epoch to the logger.
    seen = []
    commit = _PendingIO.commit

    def watched(io: _PendingIO) -> None:
        folder = Path(io.pending[0][0]).parent
        run_id = folder.parent.name
        stored = [m.step for m in client.get_metric_history(run_id, "train/loss_epoch")]
        in_place = sorted(p.name for p in folder.glob("*.ckpt"))
        seen.append(([Path(path).name for path, _ in io.pending], in_place, stored))
        commit(io)

    monkeypatch.setattr(_PendingIO, "commit", watched)
    args = linear_fit_args(tracking_uri, experiment, "--trainer.max_epochs", "2", "--test_after_fit", "false")
    result = run_configured("fit", args)
    assert result is not None and result.status == "FINISHED"
    assert seen == [
        (["epoch=0-step=32.ckpt"], [], [31]),  # in place once epoch 0's value is stored
        (["epoch=1-step=64.ckpt", "epoch=0-step=32.ckpt"], ["epoch=0-step=32.ckpt"], [31, 63]),  # new, then old removed
    ]


def test_pending_files_move_in_place_in_order_or_are_discarded(tmp_path):
    io = _PendingIO(TorchCheckpointIO())
    old, new = tmp_path / "old.ckpt", tmp_path / "new.ckpt"
    io.inner.save_checkpoint({"step": 1}, old)
    io.save_checkpoint({"step": 2}, new)
    io.remove_checkpoint(old)
    assert old.exists() and not new.exists()  # nothing changes before the commit
    io.commit()
    assert not old.exists() and io.load_checkpoint(new)["step"] == 2

    io.save_checkpoint({"step": 3}, tmp_path / "later.ckpt")
    io.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.ckpt"]

    (tmp_path / f"killed.ckpt{PENDING}4").write_bytes(b"")  # written by a fit killed before its commit
    remove_leftovers(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.ckpt"]
