"""Train an image classifier from composable configs: `python train.py model=cnn dataset=cifar10`."""

from sweeplab.cli.train import main

if __name__ == "__main__":
    main()
