import torch
from safetensors.torch import load_file

from gendd.set_writer import StreamingSetWriter
from gendd.sets import DistilledSet, load_set, save_set


def test_set_file_round_trip(tmp_path):
    images = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    save_set(tmp_path / "s.safetensors", DistilledSet(images, labels, {"ipc": 2, "dataset": "x"}))
    back = load_set(tmp_path / "s.safetensors")
    assert torch.equal(back.images, images) and torch.equal(back.labels, labels)
    assert back.metadata == {"ipc": 2, "dataset": "x"}


def test_streaming_writer_orders_by_class_and_balances(tmp_path):
    w = StreamingSetWriter(tmp_path / "s.safetensors", 3, (1, 4, 4))
    chunks = {c: [] for c in range(3)}
    for rnd in range(3):
        for c in (2, 0, 1):
            if c == 1 and rnd == 2:
                continue  # class 1 one round short: the set is cut to 2 per class
            x = torch.randint(0, 256, (1, 1, 4, 4), dtype=torch.uint8)
            chunks[c].append(x)
            w.add(x, c)
    assert w.close({"note": "t"}) == 2
    raw = load_file(str(tmp_path / "s.safetensors"))  # a genuine safetensors file
    assert raw["labels"].tolist() == [0, 0, 1, 1, 2, 2]
    expected = torch.cat([torch.cat(chunks[c][:2]) for c in range(3)])
    assert torch.equal(raw["images"], expected)
    assert load_set(tmp_path / "s.safetensors").metadata == {"note": "t"}
    assert [p.name for p in tmp_path.iterdir()] == ["s.safetensors"]  # spool removed
