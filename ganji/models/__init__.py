"""The paper's networks: one file per model, shared blocks in blocks.py."""
