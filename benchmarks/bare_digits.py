"""The floor of `python train.py`: the same training in plain torch, with nothing else.

    python benchmarks/bare_digits.py [--epochs 10] [--lr 1e-3] [--seed 0]

scikit-learn's digits, the same MLP (64 -> 512 -> 512 -> 10), Adam 1e-3, batch 64, 10 epochs,
exactly the splits sweeplab uses (a seeded 20% of the 1,797 images held out as test, 20% of the
rest as validation, the same batch order), validation every epoch, the best epoch's weights scored
once on the test split, in the precision sweeplab's `trainer.precision=auto` picks here (bf16
autocast on a CPU with native bf16, else full precision). No tracking, no checkpoints, no export.
With the same seed it reaches sweeplab's accuracies: both print them, so a benchmark shows both
sides did the same work. `--configs lr:seed,...` trains several configs in
one process (the sweep's floor).
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn


def splits(split_seed: int = 0, val_fraction: float = 0.2, test_fraction: float = 0.2):
    digits = load_digits()
    images = torch.from_numpy(np.round(digits.images * (255 / 16)).astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(digits.target).long()

    def carve(indices: torch.Tensor, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
        order = torch.randperm(len(indices), generator=torch.Generator().manual_seed(split_seed))
        n_part = round(len(indices) * fraction)
        return indices[order[n_part:]], indices[order[:n_part]]

    pool, test = carve(torch.arange(len(labels)), test_fraction)
    train, val = carve(pool, val_fraction)
    return tuple((images[part], labels[part]) for part in (train, val, test))


BF16 = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()  # as trainer.precision=auto


# sweeplab's conf/optimizer/adam.yaml and sgd.yaml (SGD's momentum 0.9).
OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": lambda params, **kw: torch.optim.SGD(params, momentum=0.9, **kw)}


def autocast() -> torch.autocast:
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=BF16)


def normalize(images: torch.Tensor) -> torch.Tensor:
    return (images.float().div(255) - 0.3053) / 0.3741


def train(train_split, val_split, test_split, lr: float, seed: int, epochs: int, batch_size: int = 64,
          optimizer: str = "adam", weight_decay: float = 0.0, stop_after=lambda epoch, accuracy: False
          ) -> tuple[float, float]:
    """`stop_after(epoch, val accuracy)` returning True ends training there (a pruner's verdict)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 512), nn.ReLU(inplace=True), nn.Linear(512, 512),
                          nn.ReLU(inplace=True), nn.Linear(512, 10))
    optimizer = OPTIMIZERS[optimizer](model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    images, labels = train_split
    best, best_weights = -1.0, None
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(labels), generator=generator)
        for start in range(0, len(labels) // batch_size * batch_size, batch_size):
            index = order[start : start + batch_size]
            with autocast():
                loss = loss_fn(model(normalize(images[index])), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        accuracy = evaluate(model, val_split, batch_size)
        if accuracy > best:
            best, best_weights = accuracy, copy.deepcopy(model.state_dict())
        if stop_after(epoch, accuracy):
            break
    model.load_state_dict(best_weights)
    return best, evaluate(model, test_split, batch_size)


@torch.no_grad()
def evaluate(model: nn.Module, split, batch_size: int) -> float:
    model.eval()
    images, labels = split
    with autocast():
        correct = sum((model(normalize(images[i : i + batch_size])).argmax(1) == labels[i : i + batch_size]).sum()
                      .item() for i in range(0, len(labels), batch_size))
    return correct / len(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--configs", default="0.001:0", help="lr:seed pairs, comma-separated")
    args = parser.parse_args()
    data = splits()
    print(f"train/val/test sizes: {'/'.join(str(len(labels)) for _, labels in data)}, {'bf16' if BF16 else 'fp32'}")
    for config in args.configs.split(","):
        lr, seed = config.split(":")
        started = time.perf_counter()
        best, test = train(*data, float(lr), int(seed), args.epochs)
        print(f"lr={lr} seed={seed}: best val acc {best:.4f}, test acc {test:.4f} "
              f"({time.perf_counter() - started:.2f} s)")


if __name__ == "__main__":
    main()
