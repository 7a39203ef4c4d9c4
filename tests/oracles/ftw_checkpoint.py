"""Write a Fields of The World checkpoint the way ftw-tools trains and saves one (run in .venv-ftw).

ftw-tools' ``CustomSemanticSegmentationTask`` (ftw_tools/training/trainers.py) is a Lightning
module that saves every constructor argument as ``hyper_parameters``, builds the smp network as
``self.model`` and its loss as ``self.criterion``; Lightning's ``ModelCheckpoint`` writes the
``.ckpt``. This script does the same with a randomly initialised network (no weights can be
downloaded here): one real Lightning training step on random data, then ``save_checkpoint``.
It also writes the network's own logits on a fixed input, as ftw-tools' inference computes them
(``ftw_tools/inference/models.py``: ``state_dict`` keys with ``model.`` removed, loaded strictly
into the smp network built from ``hyper_parameters``), for tilepipe's loader to be compared with.

Usage: ftw_checkpoint.py DIR NAME:IN_CHANNELS:NUM_CLASSES:BACKBONE ... (writes DIR/NAME.ckpt and
DIR/NAME.npz, the input image and the logits)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tilepipe.models.ftw import import_smp

# smp imports torchvision, whose C++ extension does not load beside the CPU torch of the test
# environment; tilepipe's import declares the two op names its Python part needs, then imports
smp = import_smp("")
import lightning  # noqa: E402  (after smp: it may import torchvision too)


class FieldTask(lightning.LightningModule):
    """ftw-tools' task, reduced to what its checkpoint holds: hyper_parameters, model, criterion."""

    def __init__(
        self,
        model: str = "unet",
        backbone: str = "efficientnet-b3",
        weights: bool | None = None,
        in_channels: int = 8,
        num_classes: int = 3,
        num_filters: int = 64,
        loss: str = "ce",
        class_weights: list | None = None,
        ignore_index: int | None = 3,
        pixel_weight_scale: float | None = None,
        lr: float = 1e-3,
        patience: int = 100,
        patch_weights: bool = False,
        freeze_backbone: bool = False,
        freeze_decoder: bool = False,
        edge_agreement_loss: bool = False,
        model_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        cls = {"unet": smp.Unet, "deeplabv3+": smp.DeepLabV3Plus, "upernet": smp.UPerNet}[model]
        self.model = cls(
            encoder_name=backbone,
            encoder_weights=None,
            in_channels=in_channels,
            classes=num_classes,
            **(model_kwargs or {}),
        )
        weight = None if class_weights is None else torch.tensor(class_weights)
        self.criterion = nn.CrossEntropyLoss(ignore_index=ignore_index, weight=weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits per class."""
        return self.model(x)

    def training_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
        """Cross-entropy on one batch."""
        x, y = batch
        return self.criterion(self(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """AdamW, as ftw-tools trains."""
        return torch.optim.AdamW(self.parameters(), lr=self.hparams["lr"])


def write(
    out: Path, channels: int, classes: int, backbone: str, ref: Path, model: str = "unet"
) -> None:
    """One Lightning training step, the checkpoint, and the reference logits."""
    lightning.seed_everything(0)
    task = FieldTask(
        model=model,
        backbone=backbone,
        in_channels=channels,
        num_classes=classes,
        class_weights=[0.05, 0.2, 0.75][:classes],
    )
    x = torch.rand(2, channels, 64, 64)
    y = torch.randint(0, classes, (2, 64, 64))
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=2)
    trainer = lightning.Trainer(
        max_steps=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(out.parent / "lightning"),
    )
    trainer.fit(task, data)
    trainer.save_checkpoint(out)
    # ftw-tools' load_model_from_checkpoint, then its inference: image / 3000, logits
    ckpt = torch.load(out, map_location="cpu", weights_only=False)
    state = {k.replace("model.", ""): v for k, v in ckpt["state_dict"].items()}
    state.pop("criterion.weight", None)
    hp = ckpt["hyper_parameters"]
    net = {"unet": smp.Unet, "deeplabv3+": smp.DeepLabV3Plus, "upernet": smp.UPerNet}[model](
        encoder_name=hp["backbone"],
        encoder_weights=None,
        in_channels=hp["in_channels"],
        classes=hp["num_classes"],
    )
    net.load_state_dict(state, strict=True)
    image = np.random.default_rng(1).uniform(0, 5000, (1, channels, 64, 64)).astype(np.float32)
    with torch.inference_mode():
        logits = net.eval()(torch.from_numpy(image) / 3000).numpy()
    np.savez(ref, image=image, logits=logits)


if __name__ == "__main__":
    out = Path(sys.argv[1])
    for spec in sys.argv[2:]:  # NAME:IN_CHANNELS:NUM_CLASSES:BACKBONE
        name, channels, classes, backbone = spec.split(":")
        write(out / f"{name}.ckpt", int(channels), int(classes), backbone, out / f"{name}.npz")
