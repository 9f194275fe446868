"""The PyTorch "Quickstart" tutorial (FashionMNIST MLP) as course notes write it: the plain-PyTorch baseline.

    python benchmarks/notes/fashion_mlp.py --data DIR [--epochs 5]

FashionMNIST from torchvision under DIR (downloaded if absent; generated files from
benchmarks/notes/generate_data.py are found as they are), ToTensor, DataLoader(batch_size=64) without
shuffling (as the tutorial writes it), Flatten -> 512 -> ReLU -> 512 -> ReLU -> 10, CrossEntropyLoss,
SGD(lr=1e-3), the tutorial's train() and test() loops (test on the official test split every epoch),
then model.pth in the working directory. On the CPU. The last line is machine-readable:

    RESULT accuracy=<final test accuracy, a fraction> train_size=<n> test_size=<n>

sweeplab's counterpart: `python train.py dataset=fashion_mnist model=mlp`.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision.transforms import ToTensor

device = "cpu"


class NeuralNetwork(nn.Module):
    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear_relu_stack = nn.Sequential(
            nn.Linear(28 * 28, 512),
            nn.ReLU(),
            nn.Linear(512, 512),
            nn.ReLU(),
            nn.Linear(512, 10),
        )

    def forward(self, x):
        x = self.flatten(x)
        logits = self.linear_relu_stack(x)
        return logits


def train(dataloader, model, loss_fn, optimizer):
    size = len(dataloader.dataset)
    model.train()
    for batch, (X, y) in enumerate(dataloader):
        X, y = X.to(device), y.to(device)

        # Compute prediction error
        pred = model(X)
        loss = loss_fn(pred, y)

        # Backpropagation
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

        if batch % 100 == 0:
            loss, current = loss.item(), (batch + 1) * len(X)
            print(f"loss: {loss:>7f}  [{current:>5d}/{size:>5d}]")


def test(dataloader, model, loss_fn):
    size = len(dataloader.dataset)
    num_batches = len(dataloader)
    model.eval()
    test_loss, correct = 0, 0
    with torch.no_grad():
        for X, y in dataloader:
            X, y = X.to(device), y.to(device)
            pred = model(X)
            test_loss += loss_fn(pred, y).item()
            correct += (pred.argmax(1) == y).type(torch.float).sum().item()
    test_loss /= num_batches
    correct /= size
    print(f"Test Error: \n Accuracy: {(100 * correct):>0.1f}%, Avg loss: {test_loss:>8f} \n")
    return correct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data", help="torchvision root holding FashionMNIST/raw")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()

    # Download training data from open datasets.
    training_data = datasets.FashionMNIST(root=args.data, train=True, download=True, transform=ToTensor())
    # Download test data from open datasets.
    test_data = datasets.FashionMNIST(root=args.data, train=False, download=True, transform=ToTensor())

    batch_size = 64

    # Create data loaders.
    train_dataloader = DataLoader(training_data, batch_size=batch_size)
    test_dataloader = DataLoader(test_data, batch_size=batch_size)

    for X, y in test_dataloader:
        print(f"Shape of X [N, C, H, W]: {X.shape}")
        print(f"Shape of y: {y.shape} {y.dtype}")
        break

    print(f"Using {device} device")
    model = NeuralNetwork().to(device)
    print(model)

    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)

    accuracy = 0.0
    for t in range(args.epochs):
        print(f"Epoch {t + 1}\n-------------------------------")
        train(train_dataloader, model, loss_fn, optimizer)
        accuracy = test(test_dataloader, model, loss_fn)
    print("Done!")

    torch.save(model.state_dict(), "model.pth")
    print("Saved PyTorch Model State to model.pth")
    print(f"RESULT accuracy={accuracy:.4f} train_size={len(training_data)} test_size={len(test_data)}")


if __name__ == "__main__":
    main()
