"""One attempt of one trial on its worker: the process it starts (launch, isolate), what is
measured from outside (measure: RSS; nvml: GPU memory) and inside (collect: the bootstrap's
records; output: `metrics:` patterns), how it ended (classify, oom), and its row (attempt)."""
