"""The CIFAR-10 training script of the Chinese course notes (小土堆 / Tudui), the plain-PyTorch CNN baseline.

    python benchmarks/notes/cifar10_cnn.py --data DIR [--epochs 2]

CIFAR-10 from torchvision's python batches under DIR/cifar-10-batches-py (no download; the md5 check is
off so that batches from benchmarks/notes/generate_data.py load, as sweeplab reads them with
`dataset.source.verify_checksums=false`), ToTensor, DataLoader(batch_size=64), CrossEntropyLoss,
SGD(lr=1e-2, no momentum); each epoch a training loop (model.train()), then the total test loss and
accuracy on the test split (model.eval(), torch.no_grad()), and the whole model saved to
tudui_<epoch>.pth in the working directory, as the notes do. On the CPU. The notes' TensorBoard
SummaryWriter is left out (no dependency beyond torch and torchvision).

One change to the notes' network: it has no activations at all; here a ReLU follows each conv (before its
max-pool) and Linear(1024, 64), because sweeplab's `model=cnn` has those ReLUs and the benchmark must
compare the same network. The last line is machine-readable:

    RESULT accuracy=<final test accuracy, a fraction> train_size=<n> test_size=<n>

sweeplab's counterpart: `python train.py dataset=cifar10 model=cnn dataset.source.verify_checksums=false`.
"""

from __future__ import annotations

import argparse

import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader


class UnverifiedCIFAR10(torchvision.datasets.CIFAR10):
    """torchvision's CIFAR10 minus the md5 check (as sweeplab's sources._unverified_cifar10)."""

    train_list = [[name, None] for name, _ in torchvision.datasets.CIFAR10.train_list]
    test_list = [[name, None] for name, _ in torchvision.datasets.CIFAR10.test_list]
    meta = {**torchvision.datasets.CIFAR10.meta, "md5": None}


class Tudui(nn.Module):
    def __init__(self):
        super().__init__()
        self.model1 = nn.Sequential(
            nn.Conv2d(3, 32, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, 64),
            nn.ReLU(),
            nn.Linear(64, 10),
        )

    def forward(self, x):
        x = self.model1(x)
        return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data", help="torchvision root holding cifar-10-batches-py")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()

    # 准备数据集 (the data sets)
    train_data = UnverifiedCIFAR10(
        root=args.data, train=True, transform=torchvision.transforms.ToTensor(), download=False
    )
    test_data = UnverifiedCIFAR10(
        root=args.data, train=False, transform=torchvision.transforms.ToTensor(), download=False
    )

    train_data_size = len(train_data)
    test_data_size = len(test_data)
    print(f"训练数据集的长度为：{train_data_size}")  # training set size
    print(f"测试数据集的长度为：{test_data_size}")  # test set size

    # 利用 DataLoader 来加载数据集 (the data loaders)
    train_dataloader = DataLoader(train_data, batch_size=64)
    test_dataloader = DataLoader(test_data, batch_size=64)

    # 创建网络模型 (the network)
    tudui = Tudui()

    # 损失函数 (the loss)
    loss_fn = nn.CrossEntropyLoss()

    # 优化器 (the optimizer)
    learning_rate = 1e-2
    optimizer = torch.optim.SGD(tudui.parameters(), lr=learning_rate)

    total_train_step = 0  # 记录训练的次数 (training steps so far)
    total_test_step = 0  # 记录测试的次数 (test rounds so far)
    epoch = args.epochs
    accuracy = 0.0

    for i in range(epoch):
        print(f"-------第 {i + 1} 轮训练开始-------")  # epoch i + 1 starts

        # 训练步骤开始 (training)
        tudui.train()
        for data in train_dataloader:
            imgs, targets = data
            outputs = tudui(imgs)
            loss = loss_fn(outputs, targets)

            # 优化器优化模型 (optimize)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

            total_train_step = total_train_step + 1
            if total_train_step % 100 == 0:
                print(f"训练次数：{total_train_step}, Loss: {loss.item()}")  # step, loss

        # 测试步骤开始 (testing)
        tudui.eval()
        total_test_loss = 0
        total_accuracy = 0
        with torch.no_grad():
            for data in test_dataloader:
                imgs, targets = data
                outputs = tudui(imgs)
                loss = loss_fn(outputs, targets)
                total_test_loss = total_test_loss + loss.item()
                accuracy = (outputs.argmax(1) == targets).sum()
                total_accuracy = total_accuracy + accuracy

        accuracy = (total_accuracy / test_data_size).item()
        print(f"整体测试集上的Loss: {total_test_loss}")  # total test loss
        print(f"整体测试集上的正确率: {accuracy}")  # test accuracy
        total_test_step = total_test_step + 1

        torch.save(tudui, f"tudui_{i}.pth")
        print("模型已保存")  # model saved

    print(f"RESULT accuracy={accuracy:.4f} train_size={train_data_size} test_size={test_data_size}")


if __name__ == "__main__":
    main()
