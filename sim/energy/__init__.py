"""Energy and money: what a GPU draws for the work of each engine step, a power cap's slowdown, and the run's
joules and dollars."""
