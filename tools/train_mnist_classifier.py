"""Train the MNIST feature extractor shipped as lit_gans/callbacks/weights/mnist_classifier.pt.

Trains on the 5,000 MNIST training digits available offline (../shared/data/mnist/mnist_train_5k.npz, or any
MNISTDataModule data_dir with --data-dir) with small random shifts, and reports accuracy on the official 10,000-digit
test split, which is stored with the weights.

    python tools/train_mnist_classifier.py --shared ../shared/data/mnist
"""

from __future__ import annotations

import argparse
import gzip
import io
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lit_gans.callbacks.features import MNIST_WEIGHTS, MNISTClassifier
from lit_gans.files import atomic_write_bytes


def idx_images(path: Path) -> np.ndarray:
    with gzip.open(path) as f:
        return np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)


def idx_labels(path: Path) -> np.ndarray:
    with gzip.open(path) as f:
        return np.frombuffer(f.read(), np.uint8, offset=8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=MNIST_WEIGHTS)
    args = parser.parse_args()
    torch.manual_seed(0)
    train = np.load(args.shared / "mnist_train_5k.npz")
    x = torch.from_numpy(train["images"]).float().div(127.5).sub(1).unsqueeze(1)
    y = torch.from_numpy(train["labels"]).long()
    x_test = torch.from_numpy(idx_images(args.shared / "t10k-images-idx3-ubyte.gz").copy()).float().div(127.5).sub(1).unsqueeze(1)
    y_test = torch.from_numpy(idx_labels(args.shared / "t10k-labels-idx1-ubyte.gz").copy()).long()

    model = MNISTClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs)
    for epoch in range(args.epochs):
        model.train()
        for idx in torch.randperm(len(x)).split(128):
            batch = x[idx]
            shift = torch.randint(-2, 3, (2,))
            batch = torch.roll(batch, shifts=(int(shift[0]), int(shift[1])), dims=(2, 3))
            loss = F.cross_entropy(model.logits(batch), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        model.eval()
        with torch.no_grad():
            accuracy = (torch.cat([model.logits(b).argmax(1) for b in x_test.split(1000)]) == y_test).float().mean().item()
        print(f"epoch {epoch + 1}: loss {loss.item():.4f}, test accuracy {accuracy:.4f}")
    buffer = io.BytesIO()
    torch.save({"state_dict": model.state_dict(), "test_accuracy": accuracy, "train_images": len(x)}, buffer)
    atomic_write_bytes(args.out, buffer.getvalue())
    print(f"saved {args.out} ({args.out.stat().st_size / 1024:.0f} KiB), test accuracy {accuracy:.4f}")


if __name__ == "__main__":
    main()
