"""Compiling generated kernel code in userspace, against the kernel-API shim.

The generated files are compiled unmodified: the shim header is forced in
with ``-include`` and the generated header fragment is found by the sweep's
own ``#include <asm/...>`` line through ``-I``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path

from . import cache_root, cachedir
from .diagnostics import shown_path
from .model import Spec
from .record import record
from .render import include_split, outputs
from .toolchain import Compiler

# the harness and the kernel-API shim are package data: an installed kgen compiles
# the same sources as a checkout, from any directory
_PACKAGE = Path(str(resources.files(__package__)))
SHIM_DIR = _PACKAGE / "shim"
SHIM_HEADER = SHIM_DIR / "kshim.h"
HARNESS_DIR = _PACKAGE / "harness"
# -Wno-unused-parameter as the kernel's own build has it, W=1 included (a callback that does
# not read its argument is no finding there)
KERNEL_WARNINGS = ("-Wall", "-Wextra", "-Wno-unused-parameter", "-Werror", "-std=gnu11")
# userspace stand-ins for kernel build flags; freestanding so the same
# objects also link into the bare ELF that the emulator runs
HARNESS_FLAGS = (
    "-ffreestanding", "-fno-builtin", "-fno-stack-protector", "-fcf-protection=none",
    "-mno-red-zone", "-fPIE", "-fno-sanitize=all",
)  # fmt: skip


class BuildError(Exception):
    """The compiler rejected generated code; the message holds its output."""


def quoted_include(path: Path) -> str:
    """``#include "path"``, when the path is inert there: no '"' or backslash, nothing unprintable."""
    text = str(path)
    bad = next((c for c in text if c in '"\\' or not c.isprintable()), None)
    if bad is not None:
        raise BuildError(f"{shown_path(text)}: cannot be named in a C #include (it holds {bad!r}); "
                         "use a directory whose path has no such character")  # fmt: skip
    return f'#include "{text}"'


@record
class Unit:
    """A translation unit that compiles one generated sweep form with its header."""

    name: str  # e.g. "rmpopt-kthread"
    source: Path
    includes: tuple[str, ...] = ()  # -I options searched before the generated tree


def write_files(files: dict[str, str], root: Path) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def include_dirs(spec: Spec, gen_root: Path) -> list[str]:
    """-I so that the sweep's `#include <asm/...>` finds the generated header fragment."""
    inc_dir, _ = include_split(spec.kernel.raw_helper.header)
    return [
        "-I", str(gen_root / spec.instruction.mnemonic / inc_dir),
        "-I", str(SHIM_DIR), "-I", str(HARNESS_DIR),
    ]  # fmt: skip


def _entry_name(kind: str) -> str:
    return "kgen_entry_" + kind.replace("-", "_")


def call_unit(spec: Spec, include: str) -> str:
    """A unit that includes the helpers and exposes them to the harness.

    kgen_call_raw() passes each argument to the low-level helper as the
    helper's parameter type converts it; a pointer operand gets the
    harness's memory, filled from the argument.  Both return the helper's
    result converted to u64, as the mirror expects it.
    """
    k, insn = spec.kernel, spec.instruction
    args = ", ".join(
        f"(struct {i.points_to} *)kgen_pointer_arg(args[{n}])"
        if i.type == "pointer"
        else f"args[{n}]"
        for n, i in enumerate(insn.inputs)
    )
    call = f"{k.raw_helper.name}({args})"
    returns = any(o.register or o.flag for o in insn.outputs)
    raw = f"return (u64){call};" if returns else f"{call};\n\treturn 0;"
    helper = f"return (u64){k.helper.name}(pa);" if k.helper else "(void)pa;\n\treturn 0;"
    return (
        f'#include "kharness.h"\n{include}\n\n'
        f"const int kgen_raw_nargs = {len(insn.inputs)};\n\n"
        f"u64 kgen_call_helper(u64 pa)\n{{\n\t{helper}\n}}\n\n"
        f"u64 kgen_call_raw(const u64 *args)\n{{\n\t{raw}\n}}\n"
    )


def _kconfig(spec: Spec) -> str:
    """The Kconfig symbol that builds the sweep's source: set, as in a kernel that builds it."""
    config = spec.kernel.sweep.config if spec.kernel.sweep else None
    # the harness is an x86-64 kernel
    return "#define CONFIG_X86_64 1\n" + (f"#define {config} 1\n" if config else "")


def units(spec: Spec, gen_root: Path, work: Path, reference: tuple[Path, ...] = ()) -> list[Unit]:
    """The generated files as translation units, each with its harness entry points.

    The header unit adds kgen_call_helper()/kgen_call_raw() around the
    helpers; each sweep unit adds kgen_entry_<kind>(), which calls the
    worker's setup, trigger and teardown, so no static function is unused;
    a last unit lists the forms.  Nothing in the generated files changes.

    With ``reference`` (include directories of a kernel tree), the helper
    unit includes the kernel's own header instead, as ``#include <asm/...>``,
    and calls the kernel's helper of the same name: the same cases then test
    the kernel's hand-written code.  With a tree's top directory, the unit
    holds the kernel function copied from the tree (reference.tree_unit).
    """
    k, insn = spec.kernel, spec.instruction
    if reference and k.sweep is not None:
        raise BuildError(
            "a reference replaces the low-level helper only; this spec also has a sweep"
        )
    result = []
    forms = []
    for out in outputs(spec):
        if out.fragment:
            continue  # header lines the units include, not a unit of their own
        src = gen_root / out.path
        includes: tuple[str, ...] = ()
        if out.worker is None and reference:
            from .reference import tree_of, tree_unit

            tree = tree_of(reference)
            name = f"{insn.mnemonic}-reference"
            if tree is not None:  # the tree's own function, copied from its source
                body = tree_unit(spec, tree).source
            else:
                body = call_unit(spec, f"#include <{include_split(k.raw_helper.header)[1]}>")
                includes = tuple(opt for d in reference for opt in ("-I", str(d)))
        elif out.worker is None:
            body = call_unit(spec, quoted_include(src))
            name = f"{insn.mnemonic}-helpers"
        else:
            w = out.worker
            entry = _entry_name(w.kind)
            forms.append((w.kind, entry))
            # every form links into one harness: give each its own external names
            prefix = "kgen_" + w.kind.replace("-", "_") + "_"
            renames = "".join(
                f"#define {n} {prefix}{n}\n"
                for n in dict.fromkeys((w.setup, w.trigger, w.teardown))
            )
            body = (
                f'#include "kharness.h"\n{renames}{quoted_include(src)}\n\n'
                f"int {entry}(int which);\n"
                f"int {entry}(int which)\n{{\n"
                f"\tif (which == 0)\n\t\treturn {w.setup}();\n"
                f"\tif (which == 1)\n\t\t{w.trigger}();\n"
                f"\telse\n\t\t{w.teardown}();\n\treturn 0;\n}}\n"
            )
            name = f"{insn.mnemonic}-{w.kind}"
        path = work / f"{name}.c"
        path.write_text(_kconfig(spec) + body)
        result.append(Unit(name, path, includes))
    table = "".join(f'\t{{ "{kind}", {entry} }},\n' for kind, entry in forms)
    decls = "".join(f"int {entry}(int which);\n" for _, entry in forms)
    path = work / f"{insn.mnemonic}-forms.c"
    path.write_text(
        f'#include "kharness.h"\n\n{decls}\nconst struct kgen_form kgen_forms[] = {{\n{table}'
        f"\t{{ 0, 0 }},\n}};\nconst int kgen_nforms = {len(forms)};\n"
    )
    result.append(Unit(f"{insn.mnemonic}-forms", path))
    return result


COVERAGE_FLAGS = ("--coverage",)  # gcc: arcs counted at run time (.gcda), notes beside (.gcno)


def unit_flags(spec: Spec, unit: Unit, gen_root: Path) -> list[str]:
    """What compiling a unit and preprocessing it (a reference's proof) both pass the compiler."""
    return [*KERNEL_WARNINGS, *HARNESS_FLAGS, "-include", str(SHIM_HEADER), *unit.includes,
            *include_dirs(spec, gen_root)]  # fmt: skip


def compile_object(compiler: Compiler, unit: Unit, spec: Spec, gen_root: Path,
                   opt: str = "-O2", out_dir: Path | None = None,
                   coverage: bool = False) -> Path:  # fmt: skip
    stem = f"{unit.name}{opt.replace('-', '.')}.{compiler.family}{'.cov' if coverage else ''}.o"
    obj = (out_dir or unit.source.parent) / stem
    if coverage and compiler.family != "gcc":
        raise BuildError("coverage is measured with gcc (gcov); this is " + compiler.name)
    cmd = compiler.command(
        *unit_flags(spec, unit, gen_root), opt, *(COVERAGE_FLAGS if coverage else ()),
        "-c", "-o", str(obj), str(unit.source),
    )  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BuildError(f"{compiler.name} {opt} rejected {unit.name}:\n{proc.stderr.strip()}")
    return obj


@record
class Harness:
    """The harness built at one optimisation level: a native program and a bare ELF."""

    opt: str
    native: Path
    emulated: Path
    units: tuple[Path, ...] = ()  # the objects of the generated (or reference) units
    harness: tuple[Path, ...] = ()  # the harness's own objects they link with
    compiler: Compiler | None = None
    coverage: bool = False  # the units count their arcs (gcc --coverage; native only)

    @property
    def label(self) -> str:
        """How reports name this build: the compiler and the level, e.g. "gcc -O2"."""
        return f"{self.compiler.family} {self.opt}" if self.compiler else self.opt


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BuildError(f"{what}:\n{proc.stderr.strip()}")


def _cached_object(compiler: Compiler, name: str, cmd_tail: list[str], work: Path) -> Path:
    """Compile a harness source once per compiler and content; reuse it afterwards.

    The object is compiled into ``work`` and a copy kept in the cache, written
    beside its final name and renamed into place (so the cache may be on another
    filesystem than the build), with the sha256 of its bytes recorded in
    ``<entry>.sha256``; an entry that does not match its record (empty, truncated,
    overwritten), or that is not a regular file only this user can write, is
    rebuilt, never used, and a cache that cannot be written is no cache.  What is
    linked is a copy in ``work`` of the bytes checked, not the cache's file.
    """
    sources = [HARNESS_DIR / f"{name}.c", HARNESS_DIR / "kharness.h", SHIM_HEADER]
    key = hashlib.sha256(
        "\0".join(
            [*compiler.argv, compiler.version, *cmd_tail, *(p.read_text() for p in sources)]
        ).encode()
    ).hexdigest()[:24]
    cache = _cache_dir() / f"{name}-{key}.o"
    local = work / f"{name}.harness.o"  # beside the units, named unlike any of them
    data = _valid_entry(cache)
    if data is not None:
        cachedir.used(cache)
        local.write_bytes(data)
        return local
    _run(compiler.command(*cmd_tail, "-c", str(sources[0]), "-o", str(local)),
         f"{compiler.name} rejected the harness's {name}.c")  # fmt: skip
    data = local.read_bytes() if local.is_file() else b""
    if not data.startswith(ELF_MAGIC):
        raise BuildError(f"{compiler.name} wrote no object file for the harness's {name}.c")
    try:  # kept for later builds; a cache that cannot be written is no cache
        cachedir.write_own(cache, data)
        cachedir.write_own(_digest_path(cache),
                           f"{hashlib.sha256(data).hexdigest()} {cache.name}\n".encode())  # fmt: skip
        cachedir.prune(cache.parent, sidecars=(".sha256",))
    except OSError:
        pass
    return local


ELF_MAGIC = b"\x7fELF"
MAX_ENTRY_FILE = 256 << 20  # bytes: no object or program of a harness comes near


def _digest_path(entry: Path) -> Path:
    return entry.with_name(entry.name + ".sha256")


def _valid_entry(entry: Path) -> bytes | None:
    """A cached object's bytes, when it is there, this user's own (a regular file nobody else
    may write), an ELF file, and the bytes that were recorded under this entry's name (not
    another entry's, moved here); otherwise None."""
    data = cachedir.read_own(entry, MAX_ENTRY_FILE)
    recorded = cachedir.read_own(_digest_path(entry), 1024)
    if data is None or recorded is None or not data.startswith(ELF_MAGIC):
        return None
    expected = f"{hashlib.sha256(data).hexdigest()} {entry.name}".encode()
    return data if recorded.strip() == expected else None


def _cache_dir() -> Path:
    return cache_root() / "objects"


def build_harness(compiler: Compiler, spec: Spec, files: dict[str, str], work: Path,
                  opts: tuple[str, ...] = ("-O0", "-O2", "-Os"),
                  front_ends: tuple[str, ...] = ("native", "emulated"),
                  reference: tuple[Path, ...] = (),
                  coverage: tuple[str, ...] = (), cache: bool = False) -> list[Harness]:  # fmt: skip
    """Compile the generated files once per optimisation level and link the front ends.

    The harness's own code does not depend on the spec: it is built once,
    optimised, and cached between runs (per compiler: each builds its own);
    only the generated code varies by level.  At the levels in ``coverage``
    the units count their arcs for gcov (gcc and the native front end only:
    the bare ELF has no C library to write the counts with).  With ``cache`` (files that
    come back run after run, as a spec's own render does), each level is kept, keyed by
    everything it is built from, and a later build of the same takes it from there.
    """
    if coverage and "emulated" in front_ends:
        raise BuildError("coverage needs the native engine: the emulated harness cannot write "
                         "gcov's count files")  # fmt: skip
    gen_root = work / "gen"
    write_files(files, gen_root)
    tus = units(spec, gen_root, work, reference)
    flags = [*KERNEL_WARNINGS, *HARNESS_FLAGS, "-O2", "-include", str(SHIM_HEADER),
             "-I", str(HARNESS_DIR), "-I", str(SHIM_DIR)]  # fmt: skip
    core_obj = _cached_object(compiler, "core", flags, work)
    emu_obj = _cached_object(compiler, "emu", flags, work) if "emulated" in front_ends else None
    native_obj = (
        _cached_object(compiler, "native", [*KERNEL_WARNINGS, "-O2", "-fPIE", "-I", str(HARNESS_DIR)],
                       work)
        if "native" in front_ends else None
    )  # fmt: skip
    # a level built before from the same inputs is taken from the cache (not one whose code
    # counts its arcs: gcov's files are named after the build directory; nor a reference's,
    # whose headers are outside kgen)
    keys = {opt: None if not cache or opt in coverage or reference else
            _level_key(compiler, spec, opt, files, tus, front_ends, work) for opt in opts}  # fmt: skip
    cached = {
        opt: _cached_level(key, compiler, opt, tus, core_obj, work) for opt, key in keys.items()
    }
    todo = [opt for opt in opts if cached[opt] is None]
    # every unit at every level, then every link, as many at once as there are CPUs
    pairs = [(opt, u) for opt in todo for u in tus]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        objects = _all(
            pool,
            lambda p: compile_object(
                compiler, p[1], spec, gen_root, p[0], out_dir=work, coverage=p[0] in coverage
            ),
            pairs,
        )
        compiled = dict(zip(pairs, objects, strict=True))
        links = _all(pool, lambda opt: _link(
            compiler, opt, [compiled[opt, u] for u in tus], core_obj, emu_obj, native_obj,
            opt in coverage, work), todo)  # fmt: skip
        built = dict(zip(todo, links, strict=True))
    for opt in todo:
        key = keys[opt]
        if key is not None:
            _store_level(key, built[opt], tus)
    return [cached[opt] or built[opt] for opt in opts]


def _level_key(compiler: Compiler, spec: Spec, opt: str, files: dict[str, str], tus: list[Unit],
               front_ends: tuple[str, ...], work: Path) -> str:  # fmt: skip
    """What one level's build depends on: the compiler, the level, the generated files, the
    units and their flags (the build directory left out), the harness and shim sources, and
    how this module compiles and links them."""
    h = hashlib.sha256()
    here = str(work)
    for part in (*compiler.argv, compiler.version, opt, *front_ends, Path(__file__).read_text(),
                 *(f"{rel}\0{text}" for rel, text in sorted(files.items()))):  # fmt: skip
        h.update(part.encode() + b"\0")
    for u in tus:
        h.update(u.name.encode() + b"\0" + u.source.read_text().replace(here, "@").encode() + b"\0")
        h.update("\0".join(unit_flags(spec, u, work / "gen")).replace(here, "@").encode() + b"\0")
    for d in (HARNESS_DIR, SHIM_DIR):
        for f in sorted(d.rglob("*")):
            if f.is_file():
                h.update(str(f.relative_to(d)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:24]


def _level_files(harness: Harness) -> list[Path]:
    return [*harness.units, *(p for p in (harness.native, harness.emulated) if p.is_file())]


def _cached_level(key: str | None, compiler: Compiler, opt: str, tus: list[Unit], core_obj: Path,
                  work: Path) -> Harness | None:  # fmt: skip
    """The level of ``key`` from the cache, when every file of it is what was stored: the
    bytes checked are the bytes copied into ``work`` (nothing runs from the cache itself)."""
    if key is None:
        return None
    # the names a fresh build of the level gives its files
    names = {
        f"{u.name}.o": work / f"{u.name}{opt.replace('-', '.')}.{compiler.family}.o" for u in tus
    }
    names.update({"harness": work / f"harness{opt}.{compiler.family}",
                  "harness.elf": work / f"harness{opt}.{compiler.family}.elf"})  # fmt: skip
    entry = _cache_dir().parent / "levels" / key
    listed = cachedir.read_own(entry / "MANIFEST", 1 << 16)
    if listed is None:
        return None
    stored_as, *lines = listed.decode(errors="replace").splitlines() or [""]
    if stored_as != key:  # another key's level, moved here
        return None
    manifest = [line.partition(" ") for line in lines]
    listed_names = [name for _, _, name in manifest]
    if any(n not in names for n in listed_names) or len(set(listed_names)) != len(listed_names):
        return None  # a name it does not build, or one listed twice: not kgen's
    data = {name: cachedir.read_own(entry / name, MAX_ENTRY_FILE) for _, _, name in manifest}
    if any(
        (content := data[name]) is None or hashlib.sha256(content).hexdigest() != digest
        for digest, _, name in manifest
    ):
        return None
    if any(f"{u.name}.o" not in data for u in tus):
        return None
    cachedir.used(entry)
    for name, content in data.items():
        assert content is not None  # checked above
        names[name].write_bytes(content)
        if name.startswith("harness"):
            names[name].chmod(0o700)
    units = tuple(names[f"{u.name}.o"] for u in tus)
    return Harness(opt, names["harness"], names["harness.elf"], units, (core_obj,), compiler, False)


def _store_level(key: str, harness: Harness, tus: list[Unit]) -> None:
    """Keep a level's objects and programs for the next build of the same inputs (best effort:
    a cache that cannot be written is no cache)."""
    import shutil

    root = _cache_dir().parent / "levels"
    entry = root / key  # if it is there, it was refused (damaged, or not only ours): replaced
    names = {obj: f"{u.name}.o" for obj, u in zip(harness.units, tus, strict=True)}
    names.update({harness.native: "harness", harness.emulated: "harness.elf"})
    try:
        cachedir.make_dir(root)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
        try:
            lines = [key]  # the level names its key
            for src in _level_files(harness):
                data = src.read_bytes()  # read once: what is kept is what is hashed
                (tmp / names[src]).write_bytes(data)
                lines.append(f"{hashlib.sha256(data).hexdigest()} {names[src]}")
            (tmp / "MANIFEST").write_text("\n".join(lines) + "\n")
            for f in tmp.iterdir():
                f.chmod(0o600)  # read only as this user's own (whatever the umask)
            try:
                os.rename(tmp, entry)  # whole, or (another build stored it first) not at all
            except OSError:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:  # a file or a link where the level goes: never taken, so replaced
                    entry.unlink(missing_ok=True)
                os.rename(tmp, entry)
            cachedir.prune(root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError:
        pass


def _all(pool: ThreadPoolExecutor, fn, items) -> list:
    """``fn`` of each item, run in ``pool``; the first failure (in order) is raised once the
    others have stopped, and what has not started does not start."""
    futures = [pool.submit(fn, item) for item in items]
    try:
        return [f.result() for f in futures]
    finally:
        for f in futures:
            f.cancel()


def _link(compiler: Compiler, opt: str, unit_objs: list[Path], core_obj: Path, emu_obj: Path | None,
          native_obj: Path | None, counted: bool, work: Path) -> Harness:  # fmt: skip
    """Link the units of one level with the harness's front ends."""
    objs: list[Path | str] = [*unit_objs, core_obj]
    if counted:
        objs.extend(COVERAGE_FLAGS)  # links gcov's runtime
    native = work / f"harness{opt}.{compiler.family}"
    emulated = work / f"harness{opt}.{compiler.family}.elf"
    if native_obj:
        _run(compiler.command(*map(str, objs), str(native_obj), "-pie", "-o", str(native)),
             f"linking the native harness at {opt}")  # fmt: skip
    if emu_obj:
        _run(
            compiler.command(*map(str, objs), str(emu_obj), "-nostdlib", "-static", "-no-pie",
                             "-Wl,-e,kgen_emu_run", "-o", str(emulated)),
            f"linking the emulated harness at {opt}",
        )  # fmt: skip
    return Harness(opt, native, emulated, tuple(unit_objs), (core_obj,), compiler, counted)
