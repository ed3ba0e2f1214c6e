"""Built-in trainer: a small nanoGPT-style model, byte-level corpora and one flat training loop."""
