"""compare under attack: bounded, sandboxed, interruptible, and tidy after itself."""

from __future__ import annotations

import gc
import os
import re
import shutil
import signal
import stat
import threading
import time
from pathlib import Path

import pytest

from codegen import build, cases, compare, host, toolchain
from codegen.render import render_spec
from codegen.spec import load
from tests.conftest import ISA, RMPOPT_YAML, ROOT

SPEC = load(RMPOPT_YAML)


def _other_filesystem(than: Path) -> Path:
    """A directory on another filesystem than ``than``, or skip: the test needs two."""
    for cand in ("/dev/shm", "/run", "/tmp", "/var/tmp"):
        if (
            os.path.isdir(cand)
            and os.access(cand, os.W_OK)
            and os.stat(cand).st_dev != os.stat(than).st_dev
        ):
            return Path(cand)
    pytest.skip("this machine has a single writable filesystem")


# --- the object cache -----------------------------------------------------


@pytest.fixture()
def cache_dir(tmp_path, monkeypatch):
    # not XDG_CACHE_HOME: the ziglang clang keeps its own cache there, slow to refill
    objects = tmp_path / "cache" / "kgen" / "objects"
    monkeypatch.setattr(build, "_cache_dir", lambda: objects)
    return objects


def _build(work: Path):
    work.mkdir(parents=True, exist_ok=True)
    return build.build_harness(
        toolchain.find_clang(), SPEC, render_spec(SPEC), work, ("-O2",), ("native",)
    )


def test_the_cache_fills_from_a_temp_dir_on_another_filesystem(cache_dir, tmp_path):
    import tempfile

    other = _other_filesystem(tmp_path)
    with tempfile.TemporaryDirectory(dir=other) as work:
        assert os.stat(work).st_dev != os.stat(tmp_path).st_dev
        _build(Path(work) / "w")
    objects = sorted(p.name for p in cache_dir.glob("*.o"))
    assert [n.split("-")[0] for n in objects] == ["core", "native"]
    assert not [p for p in cache_dir.iterdir() if "tmp" in p.name]  # no stray temp file


@pytest.mark.parametrize(
    "bad",
    [b"", b"garbage, not an object file\n" * 40, b"\x7fELF" + b"\0" * 60],
    ids=["empty", "garbage", "elf-header-only"],
)
def test_a_bad_cached_object_is_rebuilt(cache_dir, tmp_path, bad):
    _build(tmp_path / "a")
    (core,) = cache_dir.glob("core-*.o")
    good = core.read_bytes()
    core.write_bytes(bad)
    (h,) = _build(tmp_path / "b")  # links: the bad entry was noticed and rebuilt
    assert core.read_bytes() == good and h.native.exists()


def test_a_cached_object_is_linked_from_a_checked_copy_and_only_if_it_is_ours(cache_dir, tmp_path):
    (h,) = _build(tmp_path / "a")
    assert h.harness and all(tmp_path / "a" in p.parents for p in h.harness)  # not the cache's file
    (core,) = cache_dir.glob("core-*.o")
    assert stat.S_IMODE(core.stat().st_mode) == 0o600
    good = core.read_bytes()
    core.chmod(0o666)  # anyone could have written it: not taken
    (h,) = _build(tmp_path / "b")
    assert stat.S_IMODE(core.stat().st_mode) == 0o600 and core.read_bytes() == good
    core.unlink()
    os.mkfifo(core)  # a FIFO is a miss at once, never a wait for a writer
    done = []
    worker = threading.Thread(target=lambda: done.append(_build(tmp_path / "c")), daemon=True)
    worker.start()
    worker.join(120)
    assert done and core.read_bytes() == good


def test_a_level_that_is_not_a_directory_or_lists_a_file_twice_is_built_again(
    cache_dir, tmp_path, monkeypatch
):
    _cached_build(tmp_path / "a", opts=("-O2",))
    (entry,) = (cache_dir.parent / "levels").iterdir()
    manifest = (entry / "MANIFEST").read_text().splitlines()
    (entry / "MANIFEST").write_text("\n".join([*manifest, manifest[-1]]) + "\n")
    seen = _compiles(monkeypatch)
    _cached_build(tmp_path / "b", opts=("-O2",))  # not a crash: built, and the level replaced
    assert seen
    shutil.rmtree(entry)
    entry.write_text("a file where the level goes")
    seen.clear()
    _cached_build(tmp_path / "c", opts=("-O2",))
    assert seen and entry.is_dir()
    seen.clear()
    _cached_build(tmp_path / "d", opts=("-O2",))
    assert seen == []  # taken from now on


def test_a_level_kept_under_a_shared_umask_is_taken_and_a_refused_one_replaced(
    cache_dir, tmp_path, monkeypatch
):
    old = os.umask(0o002)
    try:
        _cached_build(tmp_path / "a", opts=("-O2",))
    finally:
        os.umask(old)
    (entry,) = (cache_dir.parent / "levels").iterdir()
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in entry.iterdir())
    seen = _compiles(monkeypatch)
    _cached_build(tmp_path / "b", opts=("-O2",))
    assert seen == []  # taken
    (entry / "MANIFEST").chmod(0o664)  # refused from now on, so built again and replaced
    _cached_build(tmp_path / "c", opts=("-O2",))
    assert seen
    seen.clear()
    _cached_build(tmp_path / "d", opts=("-O2",))
    assert seen == []


def test_a_cache_that_cannot_be_made_is_no_cache(tmp_path, monkeypatch):
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the cache would go")
    monkeypatch.setattr(build, "_cache_dir", lambda: blocked / "objects")
    for work in ("a", "b"):  # built each time, from nothing kept
        (h,) = _build(tmp_path / work)
        assert h.native.read_bytes().startswith(b"\x7fELF")
    assert blocked.read_text() == "a file where the cache would go"


def _cached_build(work: Path, files=None, opts=("-O2", "-Os")):
    work.mkdir(parents=True, exist_ok=True)
    return build.build_harness(toolchain.find_clang(), SPEC, files or render_spec(SPEC), work, opts,
                               ("native",), cache=True)  # fmt: skip


def _compiles(monkeypatch) -> list[list[str]]:
    import subprocess

    seen, run = [], subprocess.run

    def counting(cmd, *args, **kwargs):
        seen.append(cmd)
        return run(cmd, *args, **kwargs)

    monkeypatch.setattr(build.subprocess, "run", counting)
    return seen


def test_a_level_built_before_from_the_same_files_is_not_built_again(
    cache_dir, tmp_path, monkeypatch
):
    first = _cached_build(tmp_path / "a")
    seen = _compiles(monkeypatch)
    again = _cached_build(tmp_path / "b")
    assert seen == []
    # what runs is a copy in the build directory of the bytes checked, not the cache's file
    assert all(tmp_path / "b" in p.parents for h in again for p in (h.native, *h.units))
    for old, new in zip(first, again, strict=True):
        assert new.native.read_bytes() == old.native.read_bytes()
        assert [u.read_bytes() for u in new.units] == [u.read_bytes() for u in old.units]
    # the cached programs run the cases as the mirror says, line for line
    chosen = cases.generate(SPEC, 1, 40)
    line = cases.spec_line(SPEC) + "".join(
        compare._with_timeout(cases.case_line(SPEC, c, 10**6), 60) for c in chosen
    )
    want = "".join(f"{w}\n" for c in chosen for w in cases.expected(SPEC, c))
    guard = host.choose_engine("native", SPEC).guard
    assert [compare._run_native(h.native, guard, line, 600, 1 << 30) for h in again] == [want] * 2
    # a changed generated file, or a level not built before, is compiled
    files = render_spec(SPEC)
    path = next(p for p in files if p.endswith("sev-kthread.c"))
    files[path] += "/* changed */\n"
    _cached_build(tmp_path / "c", files)
    assert seen
    seen.clear()
    _cached_build(tmp_path / "d", opts=("-O2", "-O0"))
    assert seen and all("-O2" not in cmd for cmd in seen if "-c" in cmd)


def test_a_damaged_cached_level_is_built_again(cache_dir, tmp_path, monkeypatch):
    _cached_build(tmp_path / "a", opts=("-O2",))
    (entry,) = (cache_dir.parent / "levels").iterdir()
    (entry / "harness").write_bytes(b"#!/bin/sh\necho pwned\n")
    seen = _compiles(monkeypatch)
    (h,) = _cached_build(tmp_path / "b", opts=("-O2",))
    assert seen and h.native.read_bytes().startswith(b"\x7fELF")


def test_the_cache_directories_are_the_user_s_alone_whatever_the_umask(cache_dir, tmp_path):
    """Nobody else may rename or replace an entry: every directory kgen makes is 0700, also
    under a shared umask (its parents were 0775 under umask 002, and so were objects/ and
    levels/ themselves)."""
    old = os.umask(0o002)
    try:
        _cached_build(tmp_path / "a", opts=("-O2",))
    finally:
        os.umask(old)
    made = [cache_dir.parent.parent, cache_dir.parent, cache_dir, cache_dir.parent / "levels"]
    assert {d.name: oct(stat.S_IMODE(d.stat().st_mode)) for d in made} == {
        d.name: "0o700" for d in made
    }


def test_an_entry_moved_under_another_key_is_not_taken(cache_dir, tmp_path, monkeypatch):
    """Each object and each level names the key it was stored under: one moved under another
    key's name (by anyone who could write the directory) is built again, never linked or run."""
    _build(tmp_path / "a")
    (core,) = cache_dir.glob("core-*.o")
    (native,) = cache_dir.glob("native-*.o")
    good = native.read_bytes()
    for suffix in ("", ".sha256"):  # core's object, with its record, under native's name
        os.replace(f"{core}{suffix}", f"{native}{suffix}")
    _build(tmp_path / "b")
    assert native.read_bytes() == good
    files = render_spec(SPEC)
    _cached_build(tmp_path / "c", files, opts=("-O2",))
    path = next(p for p in files if p.endswith("sev-kthread.c"))
    changed = files | {path: files[path] + "/* changed */\n"}
    _cached_build(tmp_path / "d", changed, opts=("-O2",))
    levels = cache_dir.parent / "levels"
    first, second = sorted(levels.iterdir(), key=lambda e: e.stat().st_mtime_ns)
    import shutil

    shutil.rmtree(second)
    first.rename(second)  # the level of the first files under the key of the changed ones
    seen = _compiles(monkeypatch)
    _cached_build(tmp_path / "e", changed, opts=("-O2",))
    assert seen


def test_only_a_spec_s_own_render_is_kept(cache_dir, tmp_path):
    build.build_harness(
        toolchain.find_clang(), SPEC, render_spec(SPEC), tmp_path, ("-O2",), ("native",)
    )
    assert not (cache_dir.parent / "levels").exists()


# --- cases: streamed, bounded, the same as ever ---------------------------------------------


# rmpopt's cases last changed when teardowns that arrive during a pass came in (sequences
# with fixed actions: the random cases keep their draws, a few places later), rmpupdate's when retry codes that
# persist did (to reach every branch: tests/test_compare_cc.py); both digests moved when
# Machine gained `without`, which its repr shows (rmpupdate's cases themselves did not); rmpopt's
# again when a region halfway up the coverage came in (a fixed case per form, after the failed
# allocation: kgen mutate found the cap tested on where memory ends passing every case); both
# when Machine gained `hpfail` (repr), and rmpopt's with the CPU hotplug sequences; rmpopt's
# again with the hotplug operations that arrive while setup or teardown runs (three fixed
# sequences per form, after the other hotplug ones: the random cases keep their draws, six
# places later, but their hotplug draws are seeded by case number); rmpopt's again when the
# random hotplug draws could arrive while an entry point runs (only cases with hotplug moved)
@pytest.mark.parametrize(
    "path, digest", [("rmpopt", "773eb46c04167d2e"), ("rmpupdate", "7dbd1b2d115b8222")]
)
def test_a_seed_gives_the_cases_it_always_gave(path, digest):
    """Reproduce lines in old reports name cases by seed and number: they must not move."""
    import hashlib

    spec = load(ISA / f"{path}.yaml")
    # what a case is, not how it is described: wording may change, the cases may not
    text = "\n".join(repr((c.form, c.machine, c.actions)) for c in cases.generate(spec, 1, 3000))
    assert hashlib.sha256(text.encode()).hexdigest()[:16] == digest
    assert cases.generate(spec, 1, 3000)[:700] == cases.generate(spec, 1, 700)


def test_one_case_of_a_huge_run_is_cheap(run_kgen):
    start = time.monotonic()
    result = run_kgen(
        "compare", "isa/rmpopt.yaml", "--cases", "1000000", "--case", "7", "--opt=-O2"
    )
    assert result.exit_code == 0 and "1 case x 1 level" in result.output
    assert time.monotonic() - start < 15  # the million cases are never generated


def test_too_many_cases_is_a_usage_error(run_kgen):
    for command in (["compare"], ["validate", "--compare"]):
        result = run_kgen(*command, "isa/rmpopt.yaml", "--cases", "1000001")
        assert result.exit_code == 2 and "1000001 is not in the range" in result.output


def test_chunks_are_made_as_the_cases_come():
    def endless():
        yield from cases.stream(SPEC, 1)
        raise AssertionError("unreachable")

    seen = []

    def counted():
        for c in endless():
            seen.append(c.id)
            yield c

    chunks = compare._chunks(SPEC, counted(), 16)
    first = [next(chunks) for _ in range(40)]
    assert [c.id for chunk in first for c in chunk] == list(range(sum(map(len, first))))
    assert len(seen) <= compare.LOOKAHEAD + sum(map(len, first)) + 1


# --- generated code that misbehaves ---------------------------------------------------------


def _generated(tmp_path: Path, old: str, new: str, spec=SPEC) -> Path:
    files = render_spec(spec)
    header = f"{spec.instruction.mnemonic}/{spec.kernel.raw_helper.header}"
    assert old in files[header]
    files[header] = files[header].replace(old, new, 1)
    gen = tmp_path / "generated"
    build.write_files(files, gen)
    return gen


# a loop the compiler must keep, without an asm statement: native runs allow only the spec's
SPIN = "\tfor (volatile int spin = 1; spin;)\n\t\t;\n"
RAW = "static inline bool __rmpopt(u64 pa_start, u64 op_type)\n{\n"
HELPER = "static inline bool rmpopt(phys_addr_t pa)\n{\n"


def _report(result) -> dict[str, str]:
    """The first mismatch of a compare report, by field."""
    fields = {}
    for line in result.output.splitlines():
        key, sep, value = line.strip().partition(": ")
        if sep and key in ("machine", "expected", "got", "reproduce") and key not in fields:
            fields[key] = value.strip()
        elif line.startswith("  case ") and "case" not in fields:
            fields["case"] = line.strip()
    return fields


@pytest.mark.parametrize("engine", ["native", "emulator"])
def test_a_helper_that_never_returns_times_out_quickly(run_kgen, tmp_path, engine):
    gen = _generated(tmp_path, RAW, RAW + SPIN)
    start = time.monotonic()
    result = run_kgen("compare", "isa/rmpopt.yaml", "--cases", "60", "--opt=-O2", "--engine", engine,
                      "--generated", gen)  # fmt: skip
    took = time.monotonic() - start
    assert result.exit_code == 1, result.output
    report = _report(result)
    assert report["got"] == "B timed out after 2 s: the code ran far longer than the mirror expects"
    assert re.fullmatch(
        r"case \d+ at (clang|gcc) -O2: line \d+ of its trace differs", report["case"]
    )
    assert report["reproduce"].startswith("kgen compare isa/rmpopt.yaml --seed 1 --cases 60")
    assert took < 20, took  # was 20 s per case per level


@pytest.mark.parametrize("engine", ["native", "emulator"])
@pytest.mark.parametrize("fault, why", [
    ("*(volatile int *)0 = 1;", "a memory fault in the generated code, not at the spec's instruction"),
    ("((void (*)(void))0x10)();", "jumped to an address that holds no code"),
], ids=["null-write", "bad-fetch"])  # fmt: skip
def test_a_fault_in_the_helper_is_a_finding(run_kgen, tmp_path, engine, fault, why):
    gen = _generated(tmp_path, HELPER, HELPER + f"\t{fault}\n")
    result = run_kgen("compare", "isa/rmpopt.yaml", "--cases", "60", "--opt=-O0", "--engine", engine,
                      "--generated", gen)  # fmt: skip
    assert result.exit_code == 1, result.output
    report = _report(result)
    assert report["got"].startswith(f"B {why}"), report
    assert "--case " in report["reproduce"] and "Traceback" not in result.output


def _marked_processes(mark: str) -> list[int]:
    """Processes other than this one whose environment holds ``mark``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if mark.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


FORKS = (
    "int fork(void);\nunsigned int sleep(unsigned int);\nvoid _exit(int);\n\n"
    + HELPER
    + "\tstatic int forked;\n\n\tif (!forked++ && fork() == 0) {\n\t\tsleep(30);\n\t\t_exit(0);\n\t}\n"
)


@pytest.mark.usefixtures("sandbox_only")
def test_a_helper_that_forks_a_sleeping_child_finishes_promptly(run_kgen, tmp_path, monkeypatch):
    mark = f"KGEN_SAFETY_MARK={os.getpid()}-{time.monotonic_ns()}"
    monkeypatch.setenv(*mark.split("="))
    gen = _generated(tmp_path, HELPER, FORKS)
    start = time.monotonic()
    result = run_kgen("compare", "isa/rmpopt.yaml", "--cases", "60", "--opt=-O2", "--engine", "native",
                      "--generated", gen)  # fmt: skip
    took = time.monotonic() - start
    assert "Traceback" not in result.output and result.exit_code in (0, 1)
    assert took < 15, took  # the child sleeps 30 s
    assert _marked_processes(mark) == []


@pytest.fixture()
def sandbox_only(monkeypatch):
    """Let code past the native engine's source and object checks, which would refuse it
    (it calls libc): what is tested is the sandbox behind them."""
    from codegen import execcheck

    monkeypatch.setattr(execcheck, "check_sources", lambda spec, files: None)
    monkeypatch.setattr(execcheck, "check_objects", lambda spec, units, harness, runtime=(): True)


def test_the_object_check_refuses_a_helper_that_calls_libc(run_kgen, tmp_path):
    gen = _generated(
        tmp_path, HELPER, "unsigned int alarm(unsigned int);\n\n" + HELPER + "\talarm(0);\n"
    )
    result = run_kgen("compare", "isa/rmpopt.yaml", "--cases", "60", "--opt=-O2", "--engine", "native",
                      "--generated", gen)  # fmt: skip
    assert result.exit_code == 1
    assert "calls alarm, which neither the harness nor the generated code defines" in result.stderr
    assert result.stderr.startswith("kgen: isa/rmpopt.yaml: error: "), result.stderr  # as a finding


@pytest.mark.usefixtures("sandbox_only")
def test_output_past_what_the_cases_can_print_is_cut_off(run_kgen, tmp_path):
    flood = ("long write(int, const void *, unsigned long);\n\n" + HELPER
             + "\tstatic char junk[1 << 16];\n\tstatic int flooded;\n\n"
               "\tfor (int i = 0; !flooded && i < 1024; i++)\n\t\twrite(1, junk, sizeof(junk));\n"
               "\tflooded = 1;\n")  # fmt: skip
    gen = _generated(tmp_path, HELPER, flood)
    result = run_kgen("compare", "isa/rmpopt.yaml", "--cases", "60", "--opt=-O2", "--engine", "native",
                      "--generated", gen)  # fmt: skip
    assert result.exit_code == 1
    assert _report(result)["got"].startswith("B the harness wrote more than"), _report(result)


@pytest.mark.usefixtures("sandbox_only")
def test_a_file_the_helper_writes_is_bounded(run_kgen, tmp_path):
    target = tmp_path / "big"
    writes = ("int open(const char *, int, ...);\nlong write(int, const void *, unsigned long);\n\n"
              + HELPER + "\tstatic char junk[1 << 16];\n\tstatic int fd = -1;\n\n"
              f'\tif (fd < 0) {{\n\t\tfd = open("{target}", 0101, 0600);\n'
              "\t\tfor (int i = 0; i < 32; i++)\n\t\t\twrite(fd, junk, sizeof(junk));\n\t}\n")  # fmt: skip
    gen = _generated(tmp_path, HELPER, writes)
    result = run_kgen("compare", "isa/rmpopt.yaml", "--cases", "60", "--opt=-O2", "--engine", "native",
                      "--generated", gen)  # fmt: skip
    assert result.exit_code == 1
    assert _report(result)["got"] == "B the harness died (signal SIGXFSZ)"
    assert target.stat().st_size <= 1 << 20


@pytest.mark.usefixtures("sandbox_only")
def test_a_helper_that_stops_the_case_timer_is_still_stopped(run_kgen, tmp_path):
    stops = ("unsigned int alarm(unsigned int);\n\n" + HELPER
             + "\talarm(0);\n" + SPIN)  # fmt: skip
    gen = _generated(tmp_path, HELPER, stops)
    start = time.monotonic()
    result = run_kgen("compare", "isa/rmpopt.yaml", "--cases", "60", "--opt=-O2", "--engine", "native",
                      "--generated", gen)  # fmt: skip
    assert result.exit_code == 1
    assert re.fullmatch(r"B timed out after \d+ s: the harness ran far longer than expected",
                        _report(result)["got"])  # fmt: skip
    assert time.monotonic() - start < 30


# --- interrupts -----------------------------------------------------------------------------


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _harness_running(tmpdir: Path, mark: str, main_pid: int) -> bool:
    """Whether the compare under ``tmpdir`` is past its build and running cases."""

    def cmdline(pid: int) -> bytes:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return b""

    built = [p for d in tmpdir.glob("kgen-compare-*") for p in d.glob("harness-*")]
    workers = [p for p in _marked_processes(mark) if p != main_pid and b"codegen.cli" in cmdline(p)]
    return len(built) == 3 * len(toolchain.compilers()) and bool(workers)  # a level per compiler


def _start_compare(tmp_path: Path, engine: str):
    """A compare of a million cases in a subprocess with a private TMPDIR, once it runs cases."""
    import subprocess
    import sys

    private = tmp_path / "tmp"
    private.mkdir()
    mark = f"KGEN_SAFETY_MARK={os.getpid()}-{time.monotonic_ns()}"
    env = dict(os.environ, TMPDIR=str(private), **dict([mark.split("=")]))
    cmd = [sys.executable, "-m", "codegen.cli", "compare", "isa/rmpopt.yaml", "--cases", "1000000",
           "--engine", engine]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not _harness_running(private, mark, proc.pid):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the cases never started")
        time.sleep(0.05)
    time.sleep(0.5)  # the workers are busy
    return proc, private, mark


@pytest.mark.parametrize("engine", ["native", "emulator"])
@pytest.mark.parametrize(
    "signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["INT", "TERM"]
)
def test_an_interrupted_compare_stops_at_once_and_leaves_nothing(tmp_path, engine, signum, status):
    proc, private, mark = _start_compare(tmp_path, engine)
    try:
        assert _rss_kib(proc.pid) < 200 << 10  # a million cases are not held in memory
        sent = time.monotonic()
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=10)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == status, err.decode()
    assert b"Traceback" not in err and b"Aborted" not in err, err.decode()
    assert took < 2, took
    assert _marked_processes(mark) == []
    assert list(private.iterdir()) == []


@pytest.mark.parametrize("engine", ["native", "emulator"])
def test_a_killed_compare_leaves_no_process_and_its_directory_goes_next_time(tmp_path, engine, run_kgen,
                                                                            monkeypatch):  # fmt: skip
    import tempfile

    proc, private, mark = _start_compare(tmp_path, engine)
    proc.kill()  # SIGKILL: nothing of it can clean up
    proc.communicate()
    deadline = time.monotonic() + 3
    while _marked_processes(mark) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _marked_processes(mark) == []  # workers and harnesses died with it
    (left,) = private.glob("kgen-compare-*")
    alive = private / f"kgen-compare-{os.getpid()}-running"  # another compare, running
    alive.mkdir()
    unknown = private / "kgen-compare-by-someone-else"
    unknown.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    assert run_kgen("compare", "isa/rmpopt.yaml", "--cases", "5", "--opt=-O2").exit_code == 0
    assert not left.exists() and alive.exists() and unknown.exists()


def test_the_emulator_does_not_grow_with_the_cases(tmp_path, monkeypatch):
    """Unicorn holds memory per trapped instruction until closed: a long run must not keep it."""
    monkeypatch.setattr(compare, "EMU_RECYCLE_TRAPS", 20_000)  # what it keeps is then under 10 MB
    (h,) = build.build_harness(toolchain.find_clang(), SPEC, render_spec(SPEC), tmp_path, ("-O2",),
                               ("emulated",))  # fmt: skip
    chosen = cases.generate(SPEC, 1, 400)[100:]
    lines = [cases.case_line(SPEC, c, 10**6) for c in chosen]
    spec_line = cases.spec_line(SPEC)
    first = compare._run_emulated(h.emulated, spec_line, lines)
    before = _rss_kib(os.getpid())
    gc.disable()  # as in a worker, where a full collection may not come for minutes
    try:
        for _ in range(24):  # about 250 000 traps
            assert compare._run_emulated(h.emulated, spec_line, lines) == first
    finally:
        gc.enable()
    # measured: 2 MB; 30 MB when a dropped engine waits for the garbage collector; 130 MB when
    # one engine takes every trap
    assert _rss_kib(os.getpid()) - before < 15 << 10


def test_a_worker_running_emulated_jobs_stays_bounded(tmp_path, monkeypatch):
    """The same, as a worker runs it: jobs of cases at three levels, one after another."""
    from itertools import islice

    monkeypatch.setattr(compare, "EMU_RECYCLE_TRAPS", 5000)  # renew often: a short test shows it
    harnesses = build.build_harness(toolchain.find_clang(), SPEC, render_spec(SPEC), tmp_path,
                                    compare.DEFAULT_OPTS, ("emulated",))  # fmt: skip
    levels = tuple((h.opt, h.emulated) for h in harnesses)
    chunks = compare._chunks(SPEC, islice(cases.stream(SPEC, 1), 10**6), 16)
    jobs = [compare.Job(SPEC.path, SPEC.source, levels, "emulator", None, chunk, "")
            for chunk in islice(chunks, 20)]  # fmt: skip
    for job in jobs[:4]:
        compare.run_job(job)
    before = _rss_kib(os.getpid())
    for job in jobs[4:]:
        assert all(mismatch is None for _, _, mismatch in compare.run_job(job))
    assert _rss_kib(os.getpid()) - before < 5 << 10  # measured: 0-3 MB; 8 MB without a collection


def test_specs_stopped_between_them_leave_nothing(tmp_path, monkeypatch):
    """Closed after the first result, while the next spec's pool runs cases (as Ctrl-C or an
    error in the caller closes it): every worker and harness is gone, and every build
    directory."""
    import multiprocessing
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    clang = toolchain.find_clang()
    specs = [load(ISA / f"{name}.yaml") for name in ("psmash", "pvalidate")]
    # The second spec's harnesses are held before their cases, so one is surely running when
    # the compare is closed: a job's harness runs for milliseconds, and the two jobs given out
    # before the generator pauses could end unseen by a poll on a loaded machine.
    held = cases.spec_line(specs[1]).encode()
    exchange = compare._exchange

    def held_exchange(proc, data, *rest):
        if data.startswith(held):
            time.sleep(600)  # ended by the worker's SIGTERM, as a running harness would be
        return exchange(proc, data, *rest)

    monkeypatch.setattr(compare, "_exchange", held_exchange)  # forked into the workers

    def plan(spec, count: int):
        # native, whatever this host's auto picks: an emulated harness is no process of its own
        return lambda: compare.Comparison(spec, clang, host.choose_engine("native", spec), 1,
                                          count, ("-O2",), parts=8)  # fmt: skip

    each = compare.compare_each([plan(specs[0], 40), plan(specs[1], 100_000)], workers=1)
    first = next(each)
    assert first.ok and first.cases == 40
    assert multiprocessing.active_children()  # the second spec's workers run its cases
    deadline = time.monotonic() + 60  # seconds under a loaded machine's builds; ~1 s alone
    while not _running_from(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _running_from(tmp_path)  # and its harnesses
    each.close()
    assert multiprocessing.active_children() == []
    deadline = time.monotonic() + 3  # a harness killed with its worker takes a moment to go
    while _running_from(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _running_from(tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def _running_from(directory: Path) -> list[int]:
    """Processes running a program from below ``directory``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(directory).encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            pass
    return found


SPINS_BEFORE_MAIN = """
__attribute__((constructor)) static void spin_before_main(void)
{
	for (;;)
		__asm__ volatile("");
}
"""


def test_a_harness_spinning_before_its_main_dies_with_its_worker(tmp_path):
    """Code the harness runs before main() (a constructor in a --reference header) is
    confined as main() confines the rest: it has the CPU limit, and when the worker running
    it is killed outright it dies too, instead of spinning on in a session of its own."""
    import multiprocessing

    files = render_spec(SPEC)
    header = next(path for path in files if path.endswith(".h"))
    files = {**files, header: files[header] + SPINS_BEFORE_MAIN}
    (h,) = build.build_harness(toolchain.find_clang(), SPEC, files, tmp_path, ("-O2",), ("native",))
    worker = multiprocessing.get_context("fork").Process(
        target=compare._run_native, args=(h.native, None, cases.spec_line(SPEC), 60.0)
    )
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while not _running_from(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.02)
        (spinning,) = _running_from(tmp_path)
        time.sleep(0.2)  # well into the constructor
        limits = Path(f"/proc/{spinning}/limits").read_text()
        assert re.search(r"Max cpu time\s+62\s+62 ", limits), limits
        os.kill(worker.pid, signal.SIGKILL)  # nothing of the worker can clean up
        worker.join()
        deadline = time.monotonic() + 3
        while _running_from(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _running_from(tmp_path) == []
    finally:
        for pid in _running_from(tmp_path):
            os.kill(pid, signal.SIGKILL)
        if worker.is_alive():
            worker.kill()


def test_a_harness_whose_parent_is_gone_before_it_starts_does_not_run(tmp_path):
    """A worker killed between starting the harness and the harness asking to die with it:
    the harness sees another parent than --parent names and exits before any code runs."""
    import subprocess

    (h,) = build.build_harness(toolchain.find_clang(), SPEC, render_spec(SPEC), tmp_path, ("-O2",),
                               ("native",))  # fmt: skip
    line = cases.spec_line(SPEC).encode()
    mine = [str(h.native), "--parent", str(os.getpid())]
    assert subprocess.run(mine, input=line, capture_output=True, timeout=30).returncode == 0
    other = [str(h.native), "--parent", str(os.getpid() + 1)]
    gone = subprocess.run(other, input=line, capture_output=True, timeout=30)
    assert (gone.returncode, gone.stdout) == (127, b"")
