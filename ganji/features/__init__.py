"""Feature networks for the metrics (ganji.features.extractors); their names are here so that the
command line can check `--features` without importing torch."""

EXTRACTORS = ("kanji", "inception")
