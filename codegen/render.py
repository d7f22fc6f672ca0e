"""Render kernel C from a spec with the Jinja templates in ``templates/``.

Rendering is pure: :func:`render_spec` maps a spec to ``{relative path: text}``
and the same spec always gives the same bytes.  Values reach the C text only
through the filters below, which format them (hex literals, ``SZ_*``
constants, checked identifiers, wrapped comment text); a template that prints
a raw value fails to render.  Writing is separate and atomic
(:mod:`codegen.outtree`).
"""

from __future__ import annotations

import functools
import hashlib
import io
import re
import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import Any

import jinja2

from . import __version__, cache_root, cachedir
from .diagnostics import quote, size_text
from .kernelapi import NEWEST, Profile
from .model import (
    CONSTRAINT_LETTER,
    PREREQUISITE_CHECKS,
    Spec,
    Worker,
    retry_limit_name,
    text_problem,
)
from .record import record


def _templates_dir() -> Path:
    """templates/ of the checkout, or the copy an installed package carries."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "templates", here / "templates"):
        if (candidate / "helpers.h.j2").is_file():
            return candidate
    return here.parent / "templates"


TEMPLATES = _templates_dir()
LINE_LIMIT = 100

DIGEST_LEN = 12  # hex digits of the spec's sha256 in the banner
_SIZE_SUFFIX = ((40, "T"), (30, "G"), (20, "M"), (10, "K"), (0, ""))


class RenderError(Exception):
    """A spec value that the templates cannot express, or a template bug."""

    spec_path = ""  # the spec being rendered, set by render_spec


class C(str):
    """Text already formatted for C; the only kind of value a template may print."""


def _c(text: str) -> C:
    return C(text)


def f_hex(value: int, digits: int = 0) -> C:
    return _c(f"0x{value:0{digits}x}")


def _checked(kind: str, value: str) -> str:
    """``value`` if it keeps the loader's character rule ``kind``; a RenderError if not."""
    why = text_problem(kind, value)
    if why:
        raise RenderError(why)
    return value


def f_ident(value: str) -> C:
    return _c(_checked("identifier", value))


def f_upper_ident(value: str) -> C:
    return f_ident(value.upper())


_LARGEST_SZ = 46  # SZ_64T, the largest constant of <linux/sizes.h> (and of codegen/shim/kshim.h)


def _sz_name(shift: int) -> str:
    for unit_shift, unit in _SIZE_SUFFIX:
        if shift >= unit_shift and (unit_shift == 40 or shift - unit_shift < 10):
            return f"SZ_{1 << (shift - unit_shift)}{unit}"
    raise AssertionError(shift)


def f_sz(value: int, available: frozenset[str] | None = None) -> C:
    """A power-of-two size as the kernel's <linux/sizes.h> constant (SZ_1G, SZ_2T, ...).

    ``available``: the names a kernel's sizes.h has (None: SZ_1 to SZ_64T, as the newest
    has them); a size it lacks is the largest smaller one it has, times a factor
    (``(SZ_1T * 2)``).
    """
    if value <= 0 or value & (value - 1):
        raise RenderError(f"{value:#x} is not a power of two: no SZ_ constant names it")
    shift = value.bit_length() - 1

    def has(shift: int) -> bool:
        return shift <= _LARGEST_SZ if available is None else _sz_name(shift) in available

    if has(shift):
        return _c(_sz_name(shift))
    for smaller in range(shift - 1, -1, -1):
        if has(smaller):
            return _c(f"({_sz_name(smaller)} * {1 << (shift - smaller)})")
    raise RenderError(f"the kernel's <linux/sizes.h> names no size up to {_sz_name(shift)}")


def f_human_size(value: int) -> C:
    """1 << 30 -> '1 GB', for comments."""
    f_sz(value)  # a power of two, or a RenderError
    return _c(size_text(value))


def f_byte_directive(encoding: Iterable[Any]) -> C:
    return _c(".byte " + ", ".join(f"0x{b.byte:02x}" for b in encoding))


def f_byte_text(encoding: Iterable[Any]) -> C:
    return _c(" ".join(f"{b.byte:02X}" for b in encoding))


def f_register(name: str) -> C:
    return _c(name.upper())


def _constraint_letter(register: str) -> str:
    if register not in CONSTRAINT_LETTER:
        raise RenderError(f"register {register} has no asm constraint letter")
    return CONSTRAINT_LETTER[register]


def f_input_constraint(register: str) -> C:
    return _c(f'"{_constraint_letter(register)}"')


def f_cstring(value: str) -> C:
    return _c(_checked("c-string", value))


def f_comment(value: str, first: str = "", indent: str = " * ", width: int = LINE_LIMIT) -> C:
    """Wrap prose into comment lines: ``first`` starts the first line, ``indent`` the rest.

    Tabs count as 8 columns, as the kernel's 100-column rule counts them.
    """
    cols = width - len(indent.expandtabs(8))
    words = _keep_with_previous(_checked("comment", value).split(), cols - len(first))
    lines = wrap_words(words, cols, first)
    for line in lines[1:]:
        if _opens(line.split()):
            raise RenderError(f"the comment line {quote(line)} would open a kernel-doc section: "
                              f"the word before {quote(line.split()[0])} is too long to keep it "
                              "company on a line")  # fmt: skip
    return _c(("\n" + indent).join(lines))


# A word that opens a kernel-doc section or parameter where it starts a comment line
# (scripts/kernel-doc's $doc_sect reads every line of a /** comment so, indented or not).
_DOC_SECTION = re.compile(r"(@[.\w]+|@\.\.\.|description|context|returns?|notes?|examples?)(:(?!:)|$)",
                          re.I)  # fmt: skip


def _opens(words: list[str]) -> bool:
    """Whether ``words`` at the start of a comment line open a kernel-doc section."""
    m = _DOC_SECTION.match(words[0]) if words else None
    return m is not None and (m.group(2) == ":" or words[1:2] != [] and words[1].startswith(":"))


def _keep_with_previous(words: list[str], room: int) -> list[str]:
    """``words``, each one that could open a kernel-doc section (``Return:``, ``@name:``, ...)
    joined to the word before it where the two fit on a line (``room`` columns), so that no
    line break puts it at the start of a line: in the prose of a spec it is text, and
    kernel-doc would take it for a section of its own."""
    out: list[str] = []
    for n, word in enumerate(words):
        if out and _opens(words[n:]) and len(out[-1]) + 1 + len(word) <= room:
            out[-1] += " " + word
        else:
            out.append(word)
    return out


def wrap_words(words: list[str], width: int, first: str = "") -> list[str]:
    """The lines of ``textwrap.wrap(" ".join(words), width, initial_indent=first,
    break_on_hyphens=False)``, in time linear in the text.

    textwrap copies the rest of a word too long for a line each time it breaks it,
    which is quadratic in the word's length.  Here a long word is consumed through
    an offset instead; every other step is textwrap's.
    """
    chunks: list[str] = []  # words and the single spaces between them, as textwrap splits
    for word in reversed(words):
        if chunks:
            chunks.append(" ")
        chunks.append(word)
    used = 0  # characters of chunks[-1] already placed on earlier lines
    lines: list[str] = []
    while chunks:
        indent = first if not lines else ""
        room = width - len(indent)
        if lines and (chunks[-1] == " " or used == len(chunks[-1])):
            chunks.pop()  # a line does not start with the space, or the empty rest, left over
            used = 0
        line: list[str] = []
        size = 0
        while chunks and size + len(chunks[-1]) - used <= room:
            line.append(chunks.pop()[used:])
            size += len(line[-1])
            used = 0
        if chunks and len(chunks[-1]) - used > room:  # a word longer than a line: break it
            take = 1 if room < 1 else room - size
            line.append(chunks[-1][used : used + take])
            used += take
        if line and not line[-1].strip():
            line.pop()
        if line:
            lines.append(indent + "".join(line))
    return lines


def f_dec(value: int) -> C:
    return _c(str(value))


def f_tab(text: str, depth: int = 1) -> str:
    """Indent every non-empty line of a rendered block by ``depth`` tabs."""
    pad = "\t" * depth
    return "".join(pad + line if line.strip() else line for line in text.splitlines(True))


def f_duration(ms: int) -> C:
    """10000 -> '10 s', for comments."""
    return _c(f"{ms // 1000} s" if ms % 1000 == 0 and ms else f"{ms} ms")


FILTERS = {
    "hex": f_hex,
    "ident": f_ident,
    "upper_ident": f_upper_ident,
    "sz": f_sz,
    "human_size": f_human_size,
    "byte_directive": f_byte_directive,
    "byte_text": f_byte_text,
    "register": f_register,
    "input_constraint": f_input_constraint,
    "cstring": f_cstring,
    "comment": f_comment,
    "ms": f_dec,
    "dec": f_dec,
    "duration": f_duration,
}


def _strict(fn):
    """Let a filter fail as StrictUndefined does when any argument is undefined."""

    def filter_(*args: Any, **kwargs: Any) -> C:
        for arg in (*args, *kwargs.values()):
            if isinstance(arg, jinja2.Undefined):
                arg._fail_with_undefined_error()
        return fn(*args, **kwargs)

    return filter_


def _finalize(value: Any) -> Any:
    if isinstance(value, C):
        return value
    raise RenderError(f"a template printed {value!r} without a formatting filter")


_OPTIONS: dict[str, Any] = dict(
    trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False
)


MAX_COMPILED = 16 << 20  # bytes: a compiled template is ~20 KB


class _TemplateCache(jinja2.FileSystemBytecodeCache):
    """Compiled bundled templates kept between runs, beside the harness objects.

    Jinja checks each entry against the template's source; the file name pattern
    holds what else the compiled code depends on (Jinja's version, kgen's code and
    the environment's options).  A cache that cannot be read or written is no cache.
    """

    def __init__(self) -> None:
        from .loadcache import code_digest  # kgen's modules: the filters the code was compiled with

        tag = hashlib.sha256(repr((jinja2.__version__, code_digest(), sorted(_OPTIONS.items())))
                             .encode()).hexdigest()[:12]  # fmt: skip
        super().__init__(str(cache_root() / "templates"), f"{tag}-%s.cache")

    def load_bytecode(self, bucket: Any) -> None:
        # code that render runs: only from a regular file that no other user could write
        data = cachedir.read_own(self._get_cache_filename(bucket), MAX_COMPILED)
        if data is None:
            return
        try:
            bucket.load_bytecode(io.BytesIO(data))
        except Exception:  # noqa: BLE001 - an unreadable or foreign entry: compile again
            bucket.reset()
        else:
            cachedir.used(Path(self._get_cache_filename(bucket)))

    def dump_bytecode(self, bucket: Any) -> None:
        out = io.BytesIO()
        bucket.write_bytecode(out)
        try:  # as every cache entry is written (Jinja's own temporary names have no dot)
            cachedir.write_own(self._get_cache_filename(bucket), out.getvalue())
        except OSError:
            return
        cachedir.prune(Path(self.directory))  # each change of kgen's code compiles them anew


def _template_cache() -> _TemplateCache | None:
    """The compiled templates' cache, or none when kgen's own code cannot be read (its
    compiled templates could then outlive a change of the filters they were compiled with)."""
    from .loadcache import code_digest

    return _TemplateCache() if code_digest() is not None else None


@functools.lru_cache(maxsize=8)
def environment(
    templates: Path = TEMPLATES, sizes: frozenset[str] | None = None
) -> jinja2.Environment:
    """The Jinja environment for ``templates``, built once (it keeps its compiled templates);
    ``sizes``: the ``SZ_*`` names the ``sz`` filter may use, None for all."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)),
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        bytecode_cache=_template_cache() if templates == TEMPLATES else None,
        **_OPTIONS,
    )
    env.filters.update({name: _strict(fn) for name, fn in FILTERS.items()})
    env.filters["tab"] = f_tab  # a block filter: its text was formatted already
    if sizes is not None:
        env.filters["sz"] = _strict(lambda value: f_sz(value, sizes))
    return env


@record
class Output:
    """One generated file: where it is written and where it goes in a kernel tree."""

    path: str  # relative to the output directory
    template: str
    destination: str  # kernel file the fragment belongs in
    worker: Worker | None = None
    fragment: bool = False  # lines for a header the kernel has (declarations, constants)


BANNER_NAME_LIMIT = 80


def spec_display_path(spec: Spec) -> str:
    """The spec as the banner names it: its file name, the same from any directory."""
    return PurePosixPath(spec.path).name


def f_banner_name(name: str) -> C:
    """A spec's file name, checked to be inert and short in a C comment."""
    why = None
    bad = next((c for c in name if not c.isprintable()), None)
    if bad is not None:
        why = f"it holds the control character {bad!r}"
    elif not name.isascii():
        why = "it is not ASCII"
    elif "/*" in name or "*/" in name:
        why = "it holds '/*' or '*/', which would end the C comment"
    elif len(name) > BANNER_NAME_LIMIT:
        why = f"it is too long ({len(name)} characters; at most {BANNER_NAME_LIMIT})"
    if why:
        raise RenderError(f"the spec's file name {quote(name)} cannot be shown in the banner of "
                          f"the generated C: {why}; rename the file")  # fmt: skip
    return _c(name)


def include_split(header: str) -> tuple[str, str]:
    """'arch/x86/include/asm/x.h' -> ('arch/x86/include', 'asm/x.h'): the -I dir and #include name."""
    parts = PurePosixPath(header).parts
    if "include" not in parts[:-1]:
        return str(PurePosixPath(header).parent), PurePosixPath(header).name
    at = len(parts) - 1 - parts[::-1].index("include")
    return "/".join(parts[: at + 1]), "/".join(parts[at + 1 :])


# the x86 headers that hold what enabling adds: feature bits, MSRs, the exported functions
FRAGMENTS = (
    ("arch/x86/include/asm/cpufeatures.h", "cpufeatures.h.j2"),
    ("arch/x86/include/asm/msr-index.h", "msr-index.h.j2"),
    ("arch/x86/include/asm/sev.h", "decls.h.j2"),
)


def outputs(spec: Spec) -> list[Output]:
    """The helper header first, then each sweep form, then the header fragments enabling needs."""
    k = spec.kernel
    root = PurePosixPath(spec.instruction.mnemonic)
    files = [Output(str(root / k.raw_helper.header), "helpers.h.j2", k.raw_helper.header)]
    if k.sweep is not None:
        src = PurePosixPath(k.sweep.source)
        for w in k.sweep.workers:
            name = f"{src.stem}-{w.kind}{src.suffix}"
            files.append(Output(str(root / src.parent / name), "sweep.c.j2", k.sweep.source, w))
    if k.sweep is not None and k.enable is not None:
        for header, template in FRAGMENTS:
            if header != k.raw_helper.header:
                files.append(Output(str(root / header), template, header, fragment=True))
    return files


def worker_functions(worker: Worker, pass_name: str = "") -> dict[str, str]:
    """The static functions of a worker form that do the work with the mutex held."""
    return {
        "start": f"{worker.name}_start",
        "request": f"{worker.name}_request",
        "stop": f"{worker.name}_stop",
    }


@record
class EnableShape:
    """The C of enabling, computed for one kernel profile; the template places it."""

    includes: tuple[C, ...]
    mutex: C
    feature: C
    msr: C
    msr_value: C  # what setup writes
    write_fn: C  # static function that writes the MSR on one thread per core, the hotplug lock held
    one_per_core: C | None  # the condition that picks one thread of each core
    wrmsr: C  # the write statement, of "cpu" and "val"
    hotplug_lock: C
    hotplug_unlock: C
    hp_var: C  # the dynamic CPU hotplug state setup allocates
    hp_setup: C  # the cpuhp_setup_state() call
    online_fn: C  # its startup callback: writes the MSR on a CPU that comes online
    wrmsr_local: C  # the callback's write, two tabs in
    offline_fn: (
        C | None
    )  # its teardown callback, where teardown clears: clears a core's last thread
    last_of_core: C | None  # the condition that picks a core's last online thread
    clear_local: C  # the teardown callback's write of 0
    start: C
    request: C
    stop: C
    clear: bool  # teardown writes 0
    setup_body: C
    trigger_body: C
    teardown_body: C
    setup_export: C
    trigger_export: C
    teardown_export: C
    gate_text: C  # what setup's gate asks, in words: "the CPUs have X and f(Y) is true"


_SWEEP_INCLUDES = (
    "linux/align.h", "linux/cpumask.h", "linux/lockdep.h", "linux/memblock.h", "linux/pfn.h",
    "linux/printk.h", "linux/sched.h",
    "linux/sizes.h", "linux/smp.h", "linux/topology.h",
)  # fmt: skip


def enable_shape(spec: Spec, worker: Worker, profile: Profile) -> EnableShape:
    sw = spec.as_sweep()
    e, msr = sw.enable, sw.msr
    fns = {key: f_ident(name) for key, name in worker_functions(worker).items()}
    mutex = f_ident(e.mutex)
    includes = set(_SWEEP_INCLUDES) | {
        "linux/cpu.h", "linux/cpuhotplug.h", "linux/errno.h", "linux/export.h", "linux/mutex.h", "linux/types.h",
        "linux/cpufeature.h", "asm/msr.h", "asm/sev.h",
        include_split(spec.kernel.raw_helper.header)[1],
    }  # fmt: skip
    includes |= {"linux/bitops.h", "linux/err.h", "linux/kthread.h"} if worker.kind == "kthread" \
        else {"linux/workqueue.h"}  # fmt: skip
    value: str = f_ident(msr.enable.name)
    if msr.value == "base | enable":
        region = f_sz(sw.table.region_size, profile.sizes)
        value = f"ALIGN_DOWN(PFN_PHYS(min_low_pfn), {region}) | {value}"
    one_per_core = (
        "cpu == cpumask_first_and(topology_sibling_cpumask(cpu), cpu_online_mask)"
        if msr.scope == "core" else None
    )  # fmt: skip
    feature = f_ident(sw.cpuid.feature)
    online_fn = f"{f_ident(sw.helper.name)}_cpu_online"
    # where teardown clears the MSRs, a core must not keep them enabled while it has no online
    # thread: INIT leaves MSRs as they are, so it would come back enabled after teardown
    offline_fn = f"{f_ident(sw.helper.name)}_cpu_offline" if e.msr_on_teardown == "clear" else None
    includes |= {PREREQUISITE_CHECKS[p.check][0] for p in e.requires}
    gate = setup_gate(spec)
    if profile.guard:
        setup_body = "\n".join([*gate, profile.locked(e.mutex, [f"return {fns['start']}();"])])
    else:
        setup_body = "\n".join(["\tint ret;", "", *gate,
                                profile.locked(e.mutex, [f"ret = {fns['start']}();"], "ret")])  # fmt: skip
    return EnableShape(
        includes=tuple(_c(f"#include <{h}>") for h in sorted(includes, key=_include_order)),
        mutex=mutex,
        feature=feature,
        msr=f_ident(msr.name),
        msr_value=_c(value),
        write_fn=_c(f"{f_ident(sw.helper.name)}_write_msr"),
        one_per_core=_c(one_per_core) if one_per_core else None,
        wrmsr=_c(profile.wrmsr("cpu", f_ident(msr.name), "val")),
        hotplug_lock=_c(f"{profile.hotplug_lock[0]}();"),
        hotplug_unlock=_c(f"{profile.hotplug_lock[1]}();"),
        hp_var=_c(f"{f_ident(sw.helper.name)}_hp_state"),
        hp_setup=_c(
            f'cpuhp_setup_state({f_ident(e.hotplug.state)}, "{f_cstring(e.hotplug.name)}",\n'
            f"\t\t\t\t{online_fn}, {offline_fn or 'NULL'})"
        ),
        online_fn=_c(online_fn),
        wrmsr_local=_c(profile.wrmsr_local(f_ident(msr.name), value, "\t\t")),
        offline_fn=_c(offline_fn) if offline_fn else None,
        last_of_core=_c("cpumask_weight_and(topology_sibling_cpumask(cpu), cpu_online_mask) == 1")
        if msr.scope == "core"
        else None,
        clear_local=_c(profile.wrmsr_local(f_ident(msr.name), "0", None)),
        start=fns["start"],
        request=fns["request"],
        stop=fns["stop"],
        clear=e.msr_on_teardown == "clear",
        setup_body=_c(setup_body),
        trigger_body=_c(profile.locked(e.mutex, [f"{fns['request']}();"])),
        teardown_body=_c(profile.locked(e.mutex, [f"{fns['stop']}();"])),
        setup_export=_c(profile.export(f_ident(worker.setup), e.setup_caller)),
        trigger_export=_c(profile.export(f_ident(worker.trigger), e.trigger_caller)),
        teardown_export=_c(profile.export(f_ident(worker.teardown), e.teardown_caller)),
        gate_text=_c(
            " and ".join(
                [f"the CPUs have {feature}"] + [f"{c} is true" for c in setup_conditions(spec)[1:]]
            )
        ),
    )


def setup_conditions(spec: Spec) -> list[str]:
    """What setup tests before anything else, in order: the feature, then each prerequisite."""
    sw = spec.as_sweep()
    e = sw.enable
    return [f"{e.check}({f_ident(sw.cpuid.feature)})",
            *(f"{f_ident(p.check)}({f_ident(p.argument)})" for p in e.requires)]  # fmt: skip


def setup_gate(spec: Spec) -> list[str]:
    """The lines that return from setup unless every condition holds, one tab in."""
    return gate_lines(setup_conditions(spec))


def gate_lines(conditions: list[str]) -> list[str]:
    """``if (!a ||\n    !b)\n\t\treturn 0;`` and a blank line; nothing for no condition."""
    if not conditions:
        return []
    tests = [f"!{c}" for c in conditions]
    lines = [f"\tif ({tests[0]}" + (" ||" if len(tests) > 1 else ")")]
    for n, test in enumerate(tests[1:], 2):
        lines.append(f"\t    {test}" + (" ||" if n < len(tests) else ")"))
    return [*lines, "\t\treturn 0;", ""]


def _include_order(header: str) -> tuple[int, str]:
    """<linux/...> first, then <asm/...>, each sorted."""
    return (0 if header.startswith("linux/") else 1, header)


@record
class RawShape:
    """The C shape of the low-level helper: what it takes, returns and defines."""

    ret: C  # return type
    params: C  # parameter declarations
    structs: tuple[C, ...]  # structs its pointer parameters need declared
    defines: tuple[C, ...]  # constant lines (comments and #defines), aligned
    rc: Any  # the register output the helper returns, or None
    flags: tuple[Any, ...]  # flag outputs
    retry: tuple[C, ...]  # return codes the helper re-executes on
    retry_limit: C | None  # the constant bounding the retries
    retry_while: C | None  # the do-while condition of the retry loop
    outputs: C  # asm output operands
    inputs: C  # asm input operands
    clobbers: C
    sets: tuple[
        C, ...
    ] = ()  # lines after the instruction's string: CC_SET(c) where the profile needs them
    x86_64_only: bool = False  # the helpers pass a u64 in one register: x86-64 only
    doc: tuple[C, ...] = ()  # the kernel-doc below the title, one paragraph line each ("": blank)
    locals: tuple[C, ...] = ()  # its local declarations, longest first (reverse fir tree)


def raw_doc(spec: Spec, retry: tuple[C, ...] = (), limit: C | None = None) -> tuple[C, ...]:
    """The kernel-doc of the low-level helper below its title: parameters, encoding, registers,
    outputs, retries and what it returns, each sentence wrapped for a comment."""
    insn = spec.instruction
    rc = insn.return_output()
    mnemonic = f_ident(insn.mnemonic)
    binutils = insn.assembler.binutils if insn.assembler else None
    why = (f'The "{mnemonic}" mnemonic needs binutils {f_cstring(binutils)}, so the bytes are '
           "emitted with .byte." if binutils else
           f'No binutils release knows the "{mnemonic}" mnemonic yet, so the bytes are emitted '
           "with .byte.")  # fmt: skip
    inputs = ", ".join(f"{f_register(i.register)} = @{f_ident(i.name)}" for i in insn.inputs)
    kept = "".join(f" {f_register(r)} is left unchanged." for r in insn.preserved)
    lines = [
        f_comment(f"{i.description} ({i.register.upper()})", f"@{i.name}: ") for i in insn.inputs
    ]
    lines += [_c(""), f_comment(f"Encoding: {f_byte_text(insn.encoding)}. {why}"),
              f_comment(f"Inputs: {inputs}.{kept}")]  # fmt: skip
    for o in insn.outputs:
        where = f"RFLAGS.{o.required_flag.upper()}" if o.flag else o.required_register.upper()
        what = _checked("comment", o.description)
        lines.append(f_comment(f"Output: {where}, {what[0].lower()}{what[1:]}."))
    if retry and rc is not None:
        lines.append(f_comment(f"While {rc.required_register.upper()} is {' or '.join(retry)}, "
                               f"executes the instruction again, at most {limit} times."))  # fmt: skip
    lines.append(_c(""))
    flags = [o for o in insn.outputs if o.flag]
    if rc is not None:
        codes = [f"{o.software_code.name} when {o.required_flag.upper()} is set"
                 for o in flags if o.software_code]  # fmt: skip
        lines.append(f_comment(f"Return: the code in {rc.required_register.upper()}"
                               + (", or " + ", or ".join(codes) if codes else "") + "."))  # fmt: skip
    else:
        lines += [_c(f"Return: true when {f_register(o.required_flag)} is set.") for o in flags]
    return tuple(lines)


def needs_x86_64(spec: Spec) -> bool:
    """A 64-bit value in one register: the helpers build only for x86-64 (a u64 "a" operand is
    an error for a 32-bit target), and the kernel headers they go in are included by 32-bit
    kernels too."""
    insn = spec.instruction
    return any(i.type == "u64" for i in insn.inputs) or any(
        o.type == "u64" and o.register for o in insn.outputs
    )


_C_TYPES = {"u8", "u16", "u32", "u64", "bool", "int", "unsigned long"}


def c_parameter(i: Any) -> C:
    """``u64 pa_start``, ``bool validate`` or ``struct rmp_state *state``."""
    if i.type == "pointer":
        return _c(f"struct {f_ident(i.points_to)} *{f_ident(i.name)}")
    if i.type not in _C_TYPES:
        raise RenderError(f"input type {i.type} has no C spelling")
    return _c(f"{i.type} {f_ident(i.name)}")


def _comment_line(text: str) -> str:
    one = f"/* {' '.join(_checked('comment', text).split())} */"
    if len(one) <= LINE_LIMIT:
        return one
    return "/*\n * " + f_comment(text) + "\n */"


def raw_shape(spec: Spec, profile: Profile = NEWEST) -> RawShape:
    insn, raw = spec.instruction, spec.kernel.raw_helper
    rc = insn.return_output()
    flags = tuple(o for o in insn.outputs if o.flag)
    entries: list[tuple[str, str, int]] = []  # (comment, name, value)
    mnemonic = insn.mnemonic.upper()
    if rc is not None:
        for c in rc.codes:
            entries.append((f"{mnemonic} return code in {rc.required_register.upper()}: {c.description}",
                            c.name, c.value))  # fmt: skip
    for o in flags:
        if o.software_code:
            sc = o.software_code
            entries.append((f"Software defined, {mnemonic} set RFLAGS.{o.required_flag.upper()}: "
                            f"{sc.description}", sc.name, sc.value))  # fmt: skip
    retry = tuple(f_ident(c.name) for c in (rc.codes if rc else ()) if c.retry)
    limit = None
    if retry and raw.max_retries is not None:
        limit = f_ident(retry_limit_name(spec))
        entries.append((f"Times {raw.name}() re-executes {mnemonic} on a retry code", limit,
                        raw.max_retries))  # fmt: skip
    width = max((len(f"#define {name}") for _, name, _ in entries), default=0)
    stop = (width // 8 + 1) * 8
    defines = []
    for comment, name, value in entries:
        head = f"#define {f_ident(name)}"
        tabs = "\t" * (stop // 8 - len(head) // 8)
        defines.append(_c(f"{_comment_line(comment)}\n{head}{tabs}{f_dec(value)}"))
    structs = tuple(dict.fromkeys(f_ident(i.points_to) for i in insn.inputs if i.points_to))
    outs = [profile.flag_output(o.required_flag, f_ident(o.name)) for o in flags]
    if rc is not None:
        outs.append(f'"={_constraint_letter(rc.required_register)}" ({f_ident(rc.name)})')
    ins = [f"{f_input_constraint(i.register)} ({f_ident(i.name)})" for i in insn.inputs]
    clobbers = ", ".join(f'"{f_ident(c)}"' for c in insn.clobbers)
    retry_while = None
    if limit and rc is not None:
        test = " || ".join(f"{f_ident(rc.name)} == {name}" for name in retry)
        test = f"({test})" if len(retry) > 1 else test
        retry_while = _c(f"{test} && retries++ < {limit}")
    ret = return_type(spec)
    declared = [f"bool {f_ident(o.name)};" for o in flags]
    declared += [f"{ret} {f_ident(rc.name)};"] if rc is not None else []
    declared += ["unsigned int retries = 0;"] if retry_while else []
    return RawShape(
        ret, _c(", ".join(c_parameter(i) for i in insn.inputs)), structs, tuple(defines), rc, flags,
        retry, limit, retry_while, _c(", ".join(outs)), _c(", ".join(ins)), _c(clobbers),
        tuple(_c(line) for line in profile.flag_sets(o.required_flag for o in flags)), needs_x86_64(spec),
        raw_doc(spec, retry, limit), tuple(_c(d) for d in sorted(declared, key=len, reverse=True)),
    )  # fmt: skip


@record
class HelperShape:
    """The C of the higher-level helper, computed from the spec; the template places it."""

    name: C
    parameter: C
    params: C  # its parameter list: the address, then any input it passes through as it is
    ret: C  # what it returns: the low-level helper's result
    title: C  # the kernel-doc title: "rmpopt() - Run RMPOPT on the 1 GB region that ..."
    param_docs: tuple[C, ...]  # the kernel-doc line of each parameter
    doc: C  # the sentence that says what it passes where
    returns: tuple[C, ...]  # the kernel-doc Return: line
    locals: tuple[C, ...]  # the declarations of the values it passes
    args: tuple[C, ...]  # the low-level helper's arguments, one per parameter, in its order
    call: C  # the call of the low-level helper with ``args``


def helper_shape(spec: Spec, profile: Profile = NEWEST) -> HelperShape | None:
    """The higher-level helper: the aligned address and the function code, each passed to the
    low-level helper's parameter of that input, by name, and any other input passed through
    as a parameter of the same name; None without a helper."""
    view = spec.helper_view
    if view is None:
        return None
    insn, raw, h = spec.instruction, spec.kernel.raw_helper, view.helper
    table = spec.as_table().table
    addr = next((i for i in insn.inputs if i.align == "region"), None)
    code = next((i for i in insn.inputs if i.register == view.function_codes.operand), None)
    if addr is None or code is None:
        raise RenderError(f"{h.name}() needs an input aligned to the region and the function "
                          "code's input: it passes those two")  # fmt: skip
    if spec.kernel.enum is None:
        raise RenderError(f"{h.name}() passes its function code by the enum's constant: it "
                          "needs kernel.enum")  # fmt: skip
    region = f_sz(table.region_size, profile.sizes)
    const = f_ident(spec.kernel.enum.prefix + h.function.upper())
    param = f_ident(h.parameter)
    value_of = {addr.name: f_ident(addr.register), code.name: f_ident(code.register)}
    through = [i for i in insn.inputs if i.name not in value_of]
    if h.parameter in (i.name for i in through):
        raise RenderError(
            f"{h.name}()'s parameter {h.parameter} is also an input it passes through"
        )
    args = tuple(value_of.get(i.name) or f_ident(i.name) for i in insn.inputs)
    rc = insn.return_output()
    ret = return_type(spec)
    returns = ((_c(f"Return: what {f_ident(raw.name)}() returns."),) if rc else
               tuple(_c("Return: true when the region is optimized.") for o in insn.outputs if o.flag))  # fmt: skip
    return HelperShape(
        name=f_ident(h.name), parameter=param, ret=ret,
        params=_c(", ".join([f"phys_addr_t {param}", *(c_parameter(i) for i in through)])),
        title=_c(f"{f_ident(h.name)}() - Run {f_upper_ident(insn.mnemonic)} on the "
                 f"{f_human_size(table.region_size)} region that holds a physical address"),
        param_docs=(_c(f"@{param}: system physical address anywhere in the region"),
                    *(f_comment(f"{i.description} ({i.register.upper()})", f"@{i.name}: ")
                      for i in through)),
        doc=_c(f"Aligns @{param} down to {region} for {f_register(addr.register)} and passes "
               f"{const} in {f_register(code.register)}."),
        returns=returns,
        locals=(_c(f"u64 {value_of[addr.name]} = ALIGN_DOWN({param}, {region});"),
                _c(f"u64 {value_of[code.name]} = {const};")),
        args=args,
        call=_c(f"{f_ident(raw.name)}({', '.join(args)})"),
    )  # fmt: skip


def return_type(spec: Spec) -> C:
    """What the low-level helper returns, and the helper with it: the return code, or the
    flag as a bool, or nothing."""
    rc = spec.instruction.return_output()
    if rc is not None:
        return _c(rc.type)
    return _c("bool" if any(o.flag for o in spec.instruction.outputs) else "void")


def spec_digest(source: str | bytes) -> str:
    """The hash prefix a banner shows: of the spec file's bytes."""
    data = source.encode() if isinstance(source, str) else source
    return hashlib.sha256(data).hexdigest()[:DIGEST_LEN]


def banner_context(spec: Spec, out: Output) -> dict[str, C]:
    name = f_banner_name(spec_display_path(spec))
    text = f"Generated by kgen {__version__} from {name} (sha256 {spec_digest(spec.source)}); do not edit."
    lines = textwrap.wrap(text, LINE_LIMIT - len(" * "), break_long_words=False,
                          break_on_hyphens=False)  # fmt: skip
    return {
        "generated_by": _c("\n * ".join(lines)),
        "destination": _c(out.destination),
        # the kernel's license-rules.rst: C sources take //, headers /* */
        "spdx": _c(
            "// SPDX-License-Identifier: GPL-2.0-only"
            if out.destination.endswith(".c")
            else "/* SPDX-License-Identifier: GPL-2.0-only */"
        ),
    }


def _template_place(exc: jinja2.TemplateError, template: str) -> str:
    """``file:line`` of a template error: a syntax error carries it, a runtime error
    (an undefined value, a failed filter) only in its traceback's template frames."""
    name = getattr(exc, "filename", None) or template
    line = getattr(exc, "lineno", None)
    if line is None:
        import traceback  # only for a template that fails

        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith(name)]
        line = frames[-1].lineno if frames else "?"
    return f"{Path(name).name}:{line}"


def render_spec(
    spec: Spec, templates: Path = TEMPLATES, profile: Profile = NEWEST
) -> dict[str, str]:
    """Every generated file of one spec, as ``{relative path: text}``, for a kernel ``profile``;
    a RenderError names the spec (``spec_path``)."""
    try:
        return _render_spec(spec, templates, profile)
    except RenderError as exc:
        exc.spec_path = exc.spec_path or spec.path
        raise


def _render_spec(spec: Spec, templates: Path, profile: Profile) -> dict[str, str]:
    env = environment(templates, profile.sizes)
    insn, k = spec.instruction, spec.kernel
    result = {}
    check_paths(o.path for o in outputs(spec))
    for out in outputs(spec):
        context = {
            "insn": insn,
            "kernel": k,
            "sweep": k.sweep,
            "worker": out.worker,
            "header_include": _c(include_split(k.raw_helper.header)[1]),
            "raw": raw_shape(spec, profile),
            "helper": helper_shape(spec, profile),
            "en": (
                enable_shape(spec, out.worker or k.sweep.workers[0], profile)
                if k.enable is not None and k.sweep is not None
                else None
            ),
            "exported": exported_declarations(spec),
            "cpuid_word": _c(f"{insn.cpuid.word} * 32 + {insn.cpuid.word_bit}")
            if insn.cpuid
            else None,
            "msr_number": f_hex(insn.msr.number, 8) if insn.msr else None,
            "msr_enable": _c(f"BIT_ULL({insn.msr.enable.bit})") if insn.msr else None,
            "enum_const": (
                {c.name: f_ident(k.enum.prefix + c.name.upper()) for c in insn.function_codes.codes}
                if k.enum and insn.function_codes
                else {}
            ),
            **banner_context(spec, out),
        }
        try:
            text = env.get_template(out.template).render(context)
        except jinja2.TemplateError as exc:
            raise RenderError(f"{_template_place(exc, out.template)}: {exc.message}") from None
        check_layout(out.path, text)
        result[out.path] = text
    return result


def exported_declarations(spec: Spec) -> tuple[C, ...]:
    """The lines that declare the functions the worker forms export, for the sev.h fragment.

    With ``sweep.config``, the declarations stand under that Kconfig symbol and callers
    built without it get inline stubs that do nothing, as the kernel's own SNP host
    functions do; the forms' shared names are declared once.
    """
    sweep = spec.kernel.sweep
    functions: dict[str, str] = {}  # name -> return type
    for w in sweep.workers if sweep else ():
        functions.setdefault(f_ident(w.setup), "int")
        functions.setdefault(f_ident(w.trigger), "void")
        functions.setdefault(f_ident(w.teardown), "void")
    decls = [_c(f"{ret} {name}(void);") for name, ret in functions.items()]
    if sweep is None or sweep.config is None:
        return tuple(decls)
    body = {"int": "{ return 0; }", "void": "{}"}  # as the kernel's own stubs read
    stubs = [_c(f"static inline {ret} {name}(void) {body[ret]}") for name, ret in functions.items()]
    config = f_ident(sweep.config)
    return (_c(f"#ifdef {config}"), *decls, _c("#else"), *stubs, _c(f"#endif /* {config} */"))


def check_paths(paths: Iterable[str]) -> None:
    """Each output path names one file, and no output sits where another one's directory is."""
    seen: set[str] = set()
    dirs: dict[str, str] = {}
    for path in paths:
        if path in seen:
            raise RenderError(f"two outputs are both written to {path}")
        seen.add(path)
        parts = path.split("/")
        for i in range(1, len(parts)):
            dirs.setdefault("/".join(parts[:i]), path)
    for path in sorted(seen):
        if path in dirs:
            raise RenderError(f"{path} would be both a file and the directory of {dirs[path]}")


def template_inputs(templates: Path = TEMPLATES) -> tuple[str, ...]:
    """What rendering any spec depends on besides the spec and kgen's code: every file of
    ``templates``, Jinja and MarkupSafe."""
    from .loadcache import files_digest, library

    return (str(templates), files_digest(templates), library("jinja2"), library("markupsafe"))


def spec_inputs(specs: Iterable[Spec]) -> tuple[str, ...]:
    """What a render depends on of the specs: a spec is its path and text, read by kgen's code."""
    return tuple(part for spec in specs for part in (spec.path, spec.source))


def render_all(
    specs: Iterable[Spec],
    templates: Path = TEMPLATES,
    render_one: Callable[[Spec], dict[str, str]] | None = None,
) -> dict[str, str]:
    """Every generated file of the specs; a RenderError names the spec (``spec_path``).
    ``render_one`` renders a spec in place of :func:`render_spec` with ``templates``."""
    files: dict[str, str] = {}
    for spec in specs:
        try:
            rendered = render_one(spec) if render_one else render_spec(spec, templates)
            for path, text in rendered.items():
                if path in files:
                    raise RenderError(f"two specs render {path}")
                files[path] = text
            check_paths(files)
        except RenderError as exc:
            exc.spec_path = exc.spec_path or spec.path
            raise
    return files


def check_layout(path: str, text: str) -> None:
    """Kernel layout rules every generated file keeps."""
    for n, line in enumerate(text.splitlines(), 1):
        # as checkpatch does, a user-visible string may run past the limit if it starts within it
        head = line.split('"', 1)[0]
        if len(head.expandtabs(8)) > LINE_LIMIT:
            raise RenderError(f"{path}:{n}: line longer than {LINE_LIMIT} columns")
        if line != line.rstrip():
            raise RenderError(f"{path}:{n}: trailing whitespace")
    if not text.endswith("\n") or text.endswith("\n\n"):
        raise RenderError(f"{path}: must end with exactly one newline")
