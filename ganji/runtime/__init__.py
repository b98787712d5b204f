"""What a recipe runs on: the run's configuration, the device and precision policy, several processes,
EMA, checkpoints and the metrics log. Nothing here knows which models exist (see ganji.recipes)."""
