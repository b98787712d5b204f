"""`ganji quiz`: do people take our kanji for real? Human evaluation after HYPE-∞.

HYPE (Zhou et al. 2019, "HYPE: A Benchmark for Human eYe Perceptual Evaluation of Generative
Models") measures a generator by how often people are fooled: a 50/50 mix of real and generated
images, shown one at a time without a time limit; the score is the share of generated images called
real (50% = indistinguishable from real).

The package, one job per module:
- `deck.py`: what a quiz is (sources, cards) and how one is composed: half real, half generated,
  split evenly over the generators, in an order fixed by the seed;
- `sources.py`: drawing the pictures (the runs' own dataset, the models, a folder of images);
- `cards.py`: the one path every picture takes to the reader (size, ink, PNG bytes);
- `session.py`: a quiz on disk under `HOME/quiz/SESSION/` (deck, cards, answers), resumable;
- `scoring.py`: fool rates with bootstrap intervals, pooled over sessions;
- `server.py` + `page.html`: the quiz in the browser; `terminal.py`: in the terminal.

Importing this package does not import torch (only `sources.py` does, when a deck is drawn).
"""
