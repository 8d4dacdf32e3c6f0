"""QLoRA fine-tuning: base models (4-bit + LoRA), tokenisation and the LightningDataModule, the
LightningModule, and callbacks. The entry point is `src/train.py` (`python -m src.train`)."""
