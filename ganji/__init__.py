"""ganji: train, sample, measure and compare generative models of kanji.

A re-build of the GANji study (a VAE, a GAN and a DDPM trained on ~10,000 kanji) as one tool.
"""

__version__ = "0.1.0"
