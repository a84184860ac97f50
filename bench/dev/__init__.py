"""Developer tools, outside the import path of a run: throughput and memory benchmarks (``perf``,
``perf_memory``, ``perf_sweep``; ``make bench``), the kill-and-resume check (``chaos``; ``make chaos``) and the
record migration (``migrate``)."""
