"""The FashionMNIST quickstart recipe as a PyTorch Lightning user writes it: the Lightning baseline.

    python benchmarks/notes/lightning_fashion_mlp.py --data DIR [--epochs 5]

The same data and network as benchmarks/notes/fashion_mlp.py (FashionMNIST under DIR, ToTensor,
DataLoader(batch_size=64) without shuffling, Flatten -> 512 -> ReLU -> 512 -> ReLU -> 10,
CrossEntropyLoss, SGD(lr=1e-3)) in a LightningModule, validated on the official test split every epoch.
`Trainer(max_epochs=..., accelerator="cpu", devices=1)` with Lightning's defaults otherwise: the
sanity-check validation, the progress bar, the TensorBoard logger and the checkpoint callback, writing
lightning_logs/ in the working directory. Needs `pip install pytorch-lightning`. The last line is
machine-readable (the accuracy of the last validation):

    RESULT accuracy=<final test accuracy, a fraction> train_size=<n> test_size=<n>
"""

from __future__ import annotations

import argparse

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision.transforms import ToTensor


class LitMLP(pl.LightningModule):
    def __init__(self, lr: float = 1e-3):
        super().__init__()
        self.save_hyperparameters()
        self.flatten = nn.Flatten()
        self.linear_relu_stack = nn.Sequential(
            nn.Linear(28 * 28, 512),
            nn.ReLU(),
            nn.Linear(512, 512),
            nn.ReLU(),
            nn.Linear(512, 10),
        )
        self.loss_fn = nn.CrossEntropyLoss()

    def forward(self, x):
        return self.linear_relu_stack(self.flatten(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = self.loss_fn(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val_loss", self.loss_fn(logits, y), prog_bar=True)
        self.log("val_acc", (logits.argmax(1) == y).float().mean(), prog_bar=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data", help="torchvision root holding FashionMNIST/raw")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()

    training_data = datasets.FashionMNIST(root=args.data, train=True, download=True, transform=ToTensor())
    test_data = datasets.FashionMNIST(root=args.data, train=False, download=True, transform=ToTensor())
    train_dataloader = DataLoader(training_data, batch_size=64)
    test_dataloader = DataLoader(test_data, batch_size=64)

    model = LitMLP(lr=1e-3)
    trainer = pl.Trainer(max_epochs=args.epochs, accelerator="cpu", devices=1)
    trainer.fit(model, train_dataloaders=train_dataloader, val_dataloaders=test_dataloader)

    accuracy = trainer.callback_metrics["val_acc"].item()
    print(f"RESULT accuracy={accuracy:.4f} train_size={len(training_data)} test_size={len(test_data)}")


if __name__ == "__main__":
    main()
