"""Torch models: backbones by name, the classifier and its training loop."""
