"""How much of DM's kernel regression term a class's DSA transformation answers: the term's
loss and gradient for one set under fresh random ConvNets, with the real and synthetic
images of each class transformed as DM does (one siamese DSA draw per class), with one draw
shared by all classes, and without augmentation. When each class has its own draw, the
regression can tell the classes apart by the transformation instead of the content (Issue 7,
"A class's own DSA draw" in docs/BENCHMARKS.md).

    python benchmarks/augmentation_shortcut.py results/fashion-mnist/ipc10_cosine.safetensors
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sets", type=Path, nargs="+")
    ap.add_argument("--networks", type=int, default=6)
    ap.add_argument("--real", type=int, default=128, help="real images per class")
    ap.add_argument("--data-root", default=None)
    args = ap.parse_args()
    os.environ.setdefault("GENDD_COMPILE", "0")

    import torch

    from gendd.augment import dsa
    from gendd.data import load_dataset
    from gendd.evaluate import challenge_protocol, init_network, reinit_network_, seed_from
    from gendd.matching_losses import kernel_regression_loss
    from gendd.sets import load_set

    protocol = challenge_protocol()
    for path in args.sets:
        s = load_set(path).sorted_by_class()
        ds = load_dataset(s.metadata.get("dataset", "fashion-mnist"), args.data_root)
        k, ipc = ds.num_classes, len(s.labels) // ds.num_classes
        real_norm = ds.normalize(ds.train_images)
        net = init_network(protocol, ds, 0).eval().requires_grad_(False)
        g = torch.Generator().manual_seed(0)
        stats = {"per class": [], "shared": [], "none": []}
        for i in range(args.networks):
            reinit_network_(net, protocol, ds, i)
            picks = [idx[torch.randperm(len(idx), generator=g)[:args.real]]
                     for idx in (torch.nonzero(ds.train_labels == c).flatten() for c in range(k))]
            for mode, out in stats.items():
                syn = ds.normalize(s.images).requires_grad_(True)
                shared = seed_from(g)
                reals, syns = [], []
                for c in range(k):
                    real, mine = real_norm[picks[c]], syn[c * ipc:(c + 1) * ipc]
                    if mode != "none":
                        seed = shared if mode == "shared" else seed_from(g)
                        real, mine = (dsa(x, torch.Generator().manual_seed(seed),
                                          params=protocol.dsa_params, siamese=True)
                                      for x in (real, mine))
                    reals.append(net.embed(real))
                    syns.append(net.embed(mine))
                loss = kernel_regression_loss(reals, syns)
                grad, = torch.autograd.grad(loss, syn)
                out.append((loss.item(), grad.norm().item()))
        for mode, out in stats.items():
            loss, grad = (sum(v) / len(v) for v in zip(*out))
            print(f"{path.name}  augmentation {mode:9s}  regression loss {loss:.3f}  "
                  f"gradient norm {grad:.3f}  (mean of {len(out)} networks)", flush=True)


if __name__ == "__main__":
    main()
