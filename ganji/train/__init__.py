"""The training engine: one loop for every model (the model's recipe owns its loss and step)."""
