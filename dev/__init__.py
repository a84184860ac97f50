"""Developer tools, not installed with rnnbench: run them from the repository root (``python -m dev.perf``).

Throughput and memory benchmarks (``perf``, ``perf_instructions``, ``perf_memory``, ``perf_leaderboard``,
``perf_sweep``; ``make bench``), the kill-and-resume check (``chaos``; ``make chaos``), the bad-input survey
(``bad_input``), what a GPU suite would cost on this CPU (``cost``; ``make reference``) and the record migration
(``migrate``). They import the package; nothing in the package imports them.
"""
