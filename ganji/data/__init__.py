"""Datasets: rendering the kanji set, importing image folders, converting torchvision sets, storage."""
