"""How fast this machine trains, samples and measures: `ganji bench`, the plain eager baseline and the step profiler."""
