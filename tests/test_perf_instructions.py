"""dev/perf_instructions.py: reading callgrind's dumps, and refusing to start without its tools."""

import sys

import pytest

from dev import perf_instructions as pi

DUMP = """\
version: 1
creator: callgrind-3.19.0
desc: Trigger: Client Request: side
events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw Bc Bcm Bi Bim
summary: 1000 400 200 3 5 7 1 2 4 100 11 10 13
"""

ANNOTATED = """\
--------------------------------------------------------------------------------
Ir
--------------------------------------------------------------------------------
1,600 (100.0%)  PROGRAM TOTALS

--------------------------------------------------------------------------------
Ir                    file:function
--------------------------------------------------------------------------------
  700 (43.75%)  ???:0x00000000ed391000 [???]
  400 (25.00%)  /build/Python/ceval.c:_PyEval_EvalFrameDefault'2 [/usr/lib/libpython3.11.so.1.0]
  250 (15.63%)  ./malloc/./malloc/malloc.c:_int_free [/usr/lib/x86_64-linux-gnu/libc.so.6]
  120 ( 7.50%)  /build/./Include/internal/pycore_frame.h:_PyEval_EvalFrameDefault
   80 ( 5.00%)  /somewhere/else.h:never_seen_alone
   50 ( 3.13%)  ???:at::native::foo() [/venv/torch/lib/libtorch_cpu.so]
"""


def test_totals_and_callgrinds_cycle_estimate():
    t = pi.totals(DUMP)
    assert t["Ir"] == 1000 and t["Bim"] == 13
    # Ir + 10 (L1 misses 3+5+7 + branch mispredictions 11+13) + 100 (LL misses 1+2+4)
    assert pi.cycles(t) == 1000 + 10 * (15 + 24) + 100 * 7
    assert pi.cycles({"Ir": 5}) is None  # no cache simulation in the dump
    with pytest.raises(ValueError):
        pi.totals("not a dump")


def test_self_cost_by_object_puts_inlined_header_lines_with_their_function():
    objects = pi.by_object(ANNOTATED)
    assert objects == {"JIT code (oneDNN kernels)": 700, "libpython3.11.so": 520, "libc.so": 250,
                       "unknown": 80, "libtorch_cpu.so": 50}
    assert sum(objects.values()) == 1600  # every line counted once, the total left out


@pytest.mark.parametrize("argv, says", [(["--steps", "15"], "--steps must be a positive multiple of 10"),
                                        ([], "needs valgrind")])
def test_bad_input_and_missing_tools_exit_2_in_one_line(monkeypatch, capsys, tmp_path, argv, says):
    monkeypatch.setattr(pi.shutil, "which", lambda tool: None)
    monkeypatch.setattr(sys, "argv", ["perf_instructions", *argv])
    monkeypatch.chdir(tmp_path)
    assert pi.main() == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
