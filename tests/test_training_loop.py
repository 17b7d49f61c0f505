import torch

from gendd.checkpoint import (flatten_optimizer_state, load_latest_checkpoint, save_checkpoint,
                              unflatten_optimizer_state)
from gendd.training_loop import batch_indices, warmup_cosine_lr


def test_batches_are_a_pure_function_of_seed_and_step_and_cover_each_epoch():
    a = [batch_indices(3, s, 10, 4) for s in range(5)]
    b = [batch_indices(3, s, 10, 4) for s in range(5)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    first_epoch = torch.cat(a)[:10]
    assert sorted(first_epoch.tolist()) == list(range(10))
    assert not torch.equal(batch_indices(4, 0, 10, 4), a[0])


def test_lr_warms_up_then_decays_to_a_tenth():
    assert warmup_cosine_lr(0, 100, 1.0, 10) == 0.1
    assert warmup_cosine_lr(9, 100, 1.0, 10) == 1.0
    assert abs(warmup_cosine_lr(100, 100, 1.0, 10) - 0.1) < 1e-9


def test_optimizer_state_round_trips_without_pickle():
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(net.parameters(), lr=0.1)
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    tensors, rest = flatten_optimizer_state(opt.state_dict())
    opt2 = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters(), lr=0.5)
    opt2.load_state_dict(unflatten_optimizer_state(tensors, rest))
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    for k in s1["state"]:
        for name, v in s1["state"][k].items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(s2["state"][k][name]))


def test_corrupt_checkpoint_falls_back_to_previous(tmp_path, recwarn):
    for step in (10, 20):
        save_checkpoint(tmp_path, step, {"model": {"w": torch.full((2,), float(step))}}, {}, keep=3)
    (tmp_path / "step_00000020" / "model.safetensors").write_bytes(b"\x00garbage")
    parts, meta = load_latest_checkpoint(tmp_path)
    assert meta["step"] == 10 and parts["model"]["w"].tolist() == [10.0, 10.0]
    assert any("step_00000020" in str(w.message) and "corrupt" in str(w.message) for w in recwarn)


def test_only_the_last_k_checkpoints_are_kept(tmp_path):
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, {"model": {"w": torch.zeros(1)}}, {}, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000002", "step_00000003"]


def test_ema_decay_warms_up_to_its_cap():
    from gendd.training_loop import ema_decay_at

    assert ema_decay_at(0.999, 0) == 0.1  # the first update nearly copies the weights
    assert ema_decay_at(0.999, 90) == 0.91
    assert ema_decay_at(0.999, 100_000) == 0.999
