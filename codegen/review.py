"""The kernel review of the RMPOPT series, as named checks on generated code.

Each rule is one request from the review rounds (see the README's list) or
one of the reviewers' own mistaken sketches that a toolkit must not repeat.
A rule reads the rendered files and the spec, and returns the problems it
finds; every name and constant it looks for comes from the spec.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .diagnostics import Mark
from .model import CONSTRAINT_LETTER, Spec, retry_limit_name
from .record import record
from .render import f_sz, f_upper_ident, outputs, setup_conditions, worker_functions

Files = dict[str, str]


@record
class Rule:
    name: str
    summary: str
    check: Callable[[Spec, Files], list[str]]
    needs: tuple[str, ...] = ()  # kernel sections the rule is about

    def applies(self, spec: Spec) -> bool:
        return all(getattr(spec.kernel, section) is not None for section in self.needs)


RULES: list[Rule] = []
HELPER_AND_SWEEP = ("helper", "enum", "sweep")


def rule(name: str, summary: str, needs: tuple[str, ...] = ()):
    def register(fn: Callable[[Spec, Files], list[str]]):
        RULES.append(Rule(name, summary, fn, needs))
        return fn

    return register


def sweep_rule(name: str, summary: str):
    """A rule that checks each sweep form on its own: ``fn(spec, kind, text)``."""

    def register(fn: Callable[[Spec, str, str], list[str]]):
        def check(spec: Spec, files: Files) -> list[str]:
            return [
                f"{path}: {problem}"
                for kind, (path, text) in _sweeps(spec, files).items()
                for problem in fn(spec, kind, text)
            ]

        RULES.append(Rule(name, summary, check, HELPER_AND_SWEEP))
        return fn

    return register


def _header(spec: Spec, files: Files) -> tuple[str, str]:
    path = outputs(spec)[0].path
    return path, files[path]


def _sweeps(spec: Spec, files: Files) -> dict[str, tuple[str, str]]:
    """kind -> (path, text) of each sweep form."""
    return {o.worker.kind: (o.path, files[o.path]) for o in outputs(spec) if o.worker}


def _function(text: str, name: str) -> str | None:
    """The source of C function ``name`` (signature to closing brace), if defined."""
    m = re.search(rf"^[^\n;*]*\b{re.escape(name)}\([^;{{\n]*\)\n\{{\n.*?^\}}\n", text, re.M | re.S)
    return m.group(0) if m else None


def _comment_before(text: str, anchor: str) -> str:
    at = text.find(anchor)
    start = text.rfind("/**", 0, at)
    return text[start:at] if at > 0 and start >= 0 else ""


def _return_type(spec: Spec) -> str:
    rc = spec.instruction.return_output()
    return rc.type if rc else "bool" if any(o.flag for o in spec.instruction.outputs) else "void"


def _defined(text: str, name: str, value: int) -> bool:
    return re.search(rf"^#define {re.escape(name)}\t+{value}$", text, re.M) is not None


@rule(
    "raw-helper-shape",
    "the low-level helper takes the spec's registers and types and returns its output",
)
def raw_helper_shape(spec: Spec, files: Files) -> list[str]:
    path, text = _header(spec, files)
    insn, raw = spec.instruction, spec.kernel.raw_helper.name
    params = ", ".join(
        f"struct {i.points_to} *{i.name}" if i.type == "pointer" else f"{i.type} {i.name}"
        for i in insn.inputs
    )
    ret = _return_type(spec)
    rc = spec.instruction.return_output()
    problems = []
    if not path.endswith(spec.kernel.raw_helper.header):
        problems.append(f"helpers are not in {spec.kernel.raw_helper.header}")
    body = _function(text, raw)
    if body is None or not body.startswith(f"static inline {ret} {raw}({params})"):
        problems.append(f"{raw} is not 'static inline {ret} {raw}({params})'")
        return problems
    for o in insn.outputs:
        cc = o.flag[0] if o.flag else ""
        # a bare flag output, or asm/asm.h's pair for kernels built by compilers without them
        if (
            o.flag
            and f'"=@cc{cc}" ({o.name})' not in body
            and not (f"CC_OUT({cc}) ({o.name})" in body and f"CC_SET({cc})" in body)
        ):
            problems.append(
                f'{raw} does not return {o.flag.upper()} through a "=@cc" output '
                "or CC_SET()/CC_OUT()"
            )
    if rc and f'"={CONSTRAINT_LETTER.get(rc.required_register)}" ({rc.name})' not in body:
        problems.append(f"{raw} does not take {rc.name} from {rc.required_register.upper()}")
    for i in insn.inputs:
        letter = CONSTRAINT_LETTER.get(i.register)
        if letter and f'"{letter}" ({i.name})' not in body:
            problems.append(f"{i.name} is not passed in {i.register.upper()}")
    return problems


@rule(
    "return-codes-named", "every return code and software code is a named constant with its value"
)
def return_codes_named(spec: Spec, files: Files) -> list[str]:
    _, text = _header(spec, files)
    codes = [c for o in spec.instruction.outputs for c in o.codes]
    codes += [o.software_code for o in spec.instruction.outputs if o.software_code]
    return [
        f"no '#define {c.name}\t{c.value}'" for c in codes if not _defined(text, c.name, c.value)
    ]


@rule("software-code", "a flag with a software meaning returns its code, as pvalidate() does")
def software_code(spec: Spec, files: Files) -> list[str]:
    _, text = _header(spec, files)
    body = _function(text, spec.kernel.raw_helper.name) or ""
    problems = []
    for o in spec.instruction.outputs:
        if o.software_code and f"\tif ({o.name})\n\t\treturn {o.software_code.name};\n" not in body:
            problems.append(f"{o.required_flag.upper()} set does not return {o.software_code.name}")
    return problems


@rule("retry-bounded", "the helper retries on a retry code, and a bounded number of times")
def retry_bounded(spec: Spec, files: Files) -> list[str]:
    _, text = _header(spec, files)
    rc = spec.instruction.return_output()
    retry = [c.name for c in (rc.codes if rc else ()) if c.retry]
    body = _function(text, spec.kernel.raw_helper.name) or ""
    if re.search(r"while \((1|true)\)|for \(;;\)", body):
        return ["an unbounded loop"]
    if not retry or rc is None:
        return ["loops without a retry code"] if re.search(r"\bwhile\b", body) else []
    limit = retry_limit_name(spec)
    problems = []
    loop = re.search(r"\tdo \{\n.*?\n\t\} while \(([^\n]*)\);\n", body, re.S)
    if not loop:
        return ["does not execute the instruction again on a retry code"]
    for name in retry:
        if f"{rc.name} == {name}" not in loop.group(1):
            problems.append(f"does not retry on {name}")
    if not re.search(rf"&& \w+\+\+ < {limit}$", loop.group(1)):
        problems.append(f"the retries are not bounded by {limit}")
    if spec.kernel.raw_helper.max_retries is None or not _defined(
        text, limit, spec.kernel.raw_helper.max_retries
    ):
        problems.append(f"no '#define {limit}\t{spec.kernel.raw_helper.max_retries}'")
    return problems


@rule("asm-bytes", "the .byte line is the spec's encoding, without trailing \\n\\t noise")
def asm_bytes(spec: Spec, files: Files) -> list[str]:
    _, text = _header(spec, files)
    want = ".byte " + ", ".join(f"0x{b.byte:02x}" for b in spec.instruction.encoding)
    found = re.findall(r'asm volatile\("([^"]*)"', text)
    problems = []
    if found != [want]:
        problems.append(f"asm string is {found!r}, not [{want!r}]")
    if "\\n\\t" in "".join(found):
        problems.append("\\n\\t after the .byte of a single-instruction asm string")
    return problems


@rule("asm-clobbers", "the asm clobbers what the spec says the instruction clobbers")
def asm_clobbers(spec: Spec, files: Files) -> list[str]:
    _, text = _header(spec, files)
    want = ": " + ", ".join(f'"{c}"' for c in spec.instruction.clobbers) + ");"
    return [] if want in text else [f"clobber list is not {want}"]


@rule(
    "helper-aligns",
    "rmpopt(pa) aligns with ALIGN_DOWN(pa, SZ_1G) and passes the fixed code",
    needs=("helper", "enum"),
)
def helper_aligns(spec: Spec, files: Files) -> list[str]:
    _, text = _header(spec, files)
    h, k = spec.as_helper().helper, spec.kernel
    body = _function(text, h.name)
    if body is None:
        return [f"no {h.name}() helper"]
    region = f_sz(spec.as_table().table.region_size)
    const = spec.as_enum().enum.prefix + h.function.upper()
    problems = []
    if f"ALIGN_DOWN({h.parameter}, {region})" not in body:
        problems.append(f"{h.name}() does not use ALIGN_DOWN({h.parameter}, {region})")
    if const not in body:
        problems.append(f"{h.name}() does not pass {const}")
    if f"return {k.raw_helper.name}(" not in body:
        problems.append(f"{h.name}() does not return {k.raw_helper.name}()'s result")
    problems += _call_by_parameter(spec, body, {
        i.name: f"ALIGN_DOWN({h.parameter}, {region})" if i.align == "region"
        else const if i.kind == "function-code" else i.name  # passed through as it is
        for i in spec.instruction.inputs
    })  # fmt: skip
    return problems


def _call_by_parameter(spec: Spec, body: str, wanted: dict[str, str]) -> list[str]:
    """The helper's call of the low-level helper passes each parameter the value it wants
    (``wanted``: parameter name -> the C the helper computes for it), matched by name: the
    variable in each argument's position must hold that parameter's value."""
    raw, h = spec.kernel.raw_helper.name, spec.as_helper().helper.name
    call = re.search(rf"\breturn {re.escape(raw)}\(([^;]*)\);", body)
    if call is None:
        return []  # said above: it does not return the low-level helper's result
    args = [a.strip() for a in call.group(1).split(",")]
    params = [i.name for i in spec.instruction.inputs]
    held = dict(re.findall(r"^\t\w+ (\w+) = ([^;\n]*);$", body, re.M))
    if len(args) != len(params):
        return [f"{h}() passes {len(args)} arguments to {raw}(), which takes {len(params)}"]
    wrong = [(a, p) for a, p in zip(args, params, strict=True) if held.get(a, a) != wanted.get(p)]
    if not wrong:
        return []
    (a0, p0), *rest = wrong
    passes = f"{h}() passes {a0} as {raw}()'s {p0}" + "".join(
        f" and {a} as its {p}" for a, p in rest
    )
    wants = ", ".join(
        f"{p} wants {wanted.get(p, 'a value the helper does not compute')}" for _, p in wrong
    )
    return [f"{passes}: {wants}"]


@rule(
    "no-pointer-packing",
    "address and function code are never packed into one argument",
    needs=("enum",),
)
def no_pointer_packing(spec: Spec, files: Files) -> list[str]:
    _, text = _header(spec, files)
    problems = []
    if re.search(r"\bvoid \*", text):
        problems.append("a helper takes a void * argument")
    prefix = spec.as_enum().enum.prefix
    if re.search(r"\(u64\)\s*\w+\s*&", text) or re.search(
        r"\|\s*" + prefix, "".join(files.values())
    ):
        problems.append("address and function code are packed into one value")
    return problems


@rule("enum-from-spec", "the function-code enum has the spec's name and values", needs=("enum",))
def enum_from_spec(spec: Spec, files: Files) -> list[str]:
    _, text = _header(spec, files)
    e = spec.as_enum().enum
    m = re.search(rf"^enum {e.name} \{{\n(.*?)^\}};", text, re.M | re.S)
    if not m:
        return [f"no 'enum {e.name}'"]
    got = re.findall(r"^\t(\w+) = (0x[0-9a-f]+),$", m.group(1), re.M)
    want = [
        (e.prefix + c.name.upper(), f"{c.value:#x}") for c in spec.as_enum().function_codes.codes
    ]
    return [] if got == want else [f"enum {e.name} is {got}, not {want}"]


@rule("no-pud-size", "regions are SZ_1G as the architecture says, never PUD_SIZE", needs=("sweep",))
def no_pud_size(spec: Spec, files: Files) -> list[str]:
    problems = []
    region = f_sz(spec.as_sweep().table.region_size)
    for path, text in files.items():
        if re.search(r"\bPUD_(SIZE|MASK|SHIFT)\b", text):
            problems.append(f"{path} uses PUD_*")
    for path, text in _sweeps(spec, files).values():
        if text.count(f"+= {region})") != 2:
            problems.append(f"{path}: the region loops do not step by {region}")
    return problems


@sweep_rule("cap-plain-if", "the coverage cap is a plain if, not a ternary")
def cap_plain_if(spec: Spec, kind: str, text: str) -> list[str]:
    sw = spec.as_sweep()
    cov = f_sz(sw.table.coverage)
    body = _function(text, sw.sweep.pass_name) or ""
    problems = []
    if re.search(r"\?[^\n]*:", body):
        problems.append("the sweep uses a ternary")
    if not re.search(rf"\n\tif \(pa_end - pa_start > {re.escape(cov)}\)( \{{)?\n", body):
        problems.append(f"no plain 'if (pa_end - pa_start > {cov})' cap")
    direct = f"\n\t\tpa_end = pa_start + {cov};\n" in body
    named = "\n\t\tpa_end = pa_cap;\n" in body and f" pa_cap = pa_start + {cov};\n" in body
    if not (direct or named):
        problems.append(f"the cap does not set pa_end to pa_start + {cov}")
    return problems


@sweep_rule("aligned-range", "the paired pa_start = / pa_end = lines are vertically aligned")
def aligned_range(spec: Spec, kind: str, text: str) -> list[str]:
    start = re.search(r"^(\tpa_start\s*)= ALIGN_DOWN\(", text, re.M)
    end = re.search(r"^(\tpa_end\s*)= ALIGN\(", text, re.M)
    if not start or not end:
        return ["no pa_start/pa_end pair"]
    if len(start.group(1)) != len(end.group(1)):
        return ["'=' of pa_start and pa_end are not aligned"]
    return []


@sweep_rule("log-attempts", "the log line says the code attempts the optimization")
def log_attempts(spec: Spec, kind: str, text: str) -> list[str]:
    logs = re.findall(r'pr_info\("([^"]*)"', text)
    problems = []
    if not any(m.startswith("Attempt") for m in logs):
        problems.append("no log line that says it attempts")
    if any(re.search(r"\benabled?\b", m, re.I) for m in logs):
        problems.append("a log line claims optimizations are enabled")
    return problems


@sweep_rule("no-status-talk", "no talk of status where the code never reads the status")
def no_status_talk(spec: Spec, kind: str, text: str) -> list[str]:
    problems = []
    if re.search(r"status", text, re.I):
        problems.append("mentions status, which the sweep never reads")
    name = spec.as_helper().helper.name
    if re.search(rf"=\s*{name}\(|if \(!?{name}\(", text):
        problems.append("reads the status after all; document it")
    return problems


@sweep_rule(
    "delays-from-spec", "a delayed work's first and re-arm delays are the spec's milliseconds"
)
def delays_from_spec(spec: Spec, kind: str, text: str) -> list[str]:
    """Timing the cases cannot see (a millisecond less is the same jiffy at HZ=250) still
    has to be the spec's."""
    if kind != "delayed-work":
        return []
    w = next(w for w in spec.as_sweep().sweep.workers if w.kind == kind)
    prefix = f_upper_ident(spec.as_sweep().helper.name)
    return [f"{prefix}_{what}_DELAY_MS is not the spec's {ms} ms"
            for what, ms in (("FIRST", w.first_delay_ms), ("REARM", w.rearm_delay_ms))
            if ms is not None and not _defined(text, f"{prefix}_{what}_DELAY_MS", ms)]  # fmt: skip


@sweep_rule("worker-sleeps", "the worker runs one pass per request and then sleeps")
def worker_sleeps(spec: Spec, kind: str, text: str) -> list[str]:
    sweep = spec.as_sweep().sweep
    w = next(w for w in sweep.workers if w.kind == kind)
    problems = []
    inner = worker_functions(w)
    if kind == "kthread":
        body = _function(text, w.name) or ""
        loop = re.search(
            r"set_current_state\(TASK_INTERRUPTIBLE\);\n\t+if \(kthread_should_stop\(\)\)\n"
            r"\t+break;\n.*?schedule\(\);", body, re.S)  # fmt: skip
        if not loop:
            problems.append(f"{w.name} does not sleep until woken between passes")
        if body.count(f"{sweep.pass_name}();") != 1:
            problems.append(f"{w.name} does not run exactly one pass per wake-up")
        if "kthread_stop(" not in (_function(text, inner["stop"]) or ""):
            problems.append(f"{inner['stop']} does not stop the kthread")
    else:
        if re.search(r"(queue|mod)_delayed_work", _function(text, f"{w.name}_fn") or ""):
            problems.append("the work re-arms itself and never rests")
        if "mod_delayed_work(" not in (_function(text, inner["request"]) or ""):
            problems.append(f"{inner['request']} does not batch with mod_delayed_work()")
    return problems


@sweep_rule(
    "setup-order", "setup checks the feature first, creates the worker, then enables the MSRs"
)
def setup_order(spec: Spec, kind: str, text: str) -> list[str]:
    sw = spec.as_sweep()
    e = sw.enable
    w = next(w for w in sw.sweep.workers if w.kind == kind)
    problems = []
    setup = _function(text, w.setup) or ""
    body = setup.split("{\n", 1)[-1]
    statements = [line.strip() for line in body.splitlines()
                  if line.strip() and not line.strip().startswith(("int ", "u64 "))]  # fmt: skip
    # the first statement, continuation lines joined: the one gate before anything else
    gate = statements[0] if statements else ""
    for line in statements[1:]:
        if not gate.endswith("||"):
            break
        gate += " " + line
    wanted = "if (" + " || ".join(f"!{c}" for c in setup_conditions(spec)) + ")"
    if gate != wanted:
        problems.append(f"{w.setup} does not check {sw.cpuid.feature}"
                        + "".join(f", then {p.check}({p.argument})" for p in e.requires)
                        + " first")  # fmt: skip
    start = _function(text, worker_functions(w)["start"]) or ""
    create = "alloc_ordered_workqueue(" if kind == "delayed-work" else "kthread_run("
    write = "cpuhp_setup_state("  # its callback enables the MSRs on every online core
    if create not in start or write not in start or start.index(create) > start.index(write):
        problems.append(
            "the MSRs are enabled before the worker exists: a failure would leave "
            "them enabled with nothing to clear them"
        )
    return problems


@sweep_rule("resched-between-regions", "cond_resched() after every region, leader and followers")
def resched_between_regions(spec: Spec, kind: str, text: str) -> list[str]:
    loops = re.findall(r"\tfor \(pa = pa_start; pa < pa_end; [^\n]*\{\n(.*?)\n\t\}", text, re.S)
    if len(loops) != 2 or not all(body.rstrip().endswith("cond_resched();") for body in loops):
        return ["a region loop lacks cond_resched()"]
    return []


@sweep_rule(
    "followers-skip-leader-core", "followers are primary threads minus the leader's siblings"
)
def followers_skip_leader_core(spec: Spec, kind: str, text: str) -> list[str]:
    problems = []
    if "topology_is_primary_thread(cpu)" not in text:
        problems.append("followers are not restricted to primary threads")
    if "!cpumask_test_cpu(cpu, topology_sibling_cpumask(leader))" not in text:
        problems.append("followers include the leader's siblings")
    if text.find("migrate_disable();") > text.find("leader = smp_processor_id();"):
        problems.append("the leader may migrate while it sweeps")
    return problems


@rule("byte-comment", "a comment above __rmpopt documents encoding, inputs and output")
def byte_comment(spec: Spec, files: Files) -> list[str]:
    _, text = _header(spec, files)
    insn = spec.instruction
    doc = _comment_before(
        text, f"static inline {_return_type(spec)} {spec.kernel.raw_helper.name}("
    )
    doc = " ".join(line.lstrip(" *") for line in doc.splitlines())
    need = [insn.mnemonic.upper(), " ".join(f"{b.byte:02X}" for b in insn.encoding), "binutils"]
    need += [f"{i.register.upper()} = @{i.name}" for i in insn.inputs]
    need += [f"RFLAGS.{o.flag.upper()}" for o in insn.outputs if o.flag]
    return [
        f"the comment above {spec.kernel.raw_helper.name} lacks {n!r}" for n in need if n not in doc
    ]


@rule(
    "no-warn-on-success",
    "CF = 1 means optimized: never WARN on the helper's result",
    needs=("helper",),
)
def no_warn_on_success(spec: Spec, files: Files) -> list[str]:
    names = f"({spec.kernel.raw_helper.name}|{spec.as_helper().helper.name})"
    return [
        f"{path}: WARN on {names}()" for path, text in files.items()
        if re.search(rf"WARN(_ON)?(_ONCE)?\(\s*!?{names}\(", text)
    ]  # fmt: skip


_FUNCTION = re.compile(r"^[^\n;*#]*\b(\w+)\([^;{\n]*\)\n\{\n(.*?)^\}\n", re.M | re.S)
# a local declaration: a type of one or more words, then names (each maybe with an initialiser)
_DECLARATION = re.compile(r"\t(?!return\b|goto\b)[a-z_][\w ]*?[\w*] \**(\w+)(\[\w*\])?( = [^;]+)?"
                          r"(, \**\w+( = [^;,]+)?)*;")  # fmt: skip
_REGISTERS = frozenset("rax rbx rcx rdx rsi rdi r8 r9 r10 r11 eax ebx ecx edx esi edi".split())


@rule(
    "reverse-fir-tree",
    "a function's local declarations are longest first, as the x86 tree asks (register-named "
    "values may keep the register order)",
)
def reverse_fir_tree(spec: Spec, files: Files) -> list[str]:
    problems = []
    for path, text in files.items():
        for fn in _FUNCTION.finditer(text):
            block = []
            for line in fn.group(2).split("\n"):
                m = _DECLARATION.fullmatch(line)
                if not m:
                    break
                block.append((line, m.group(1)))
            if all(name in _REGISTERS for _, name in block):
                continue
            widths = [len(line.expandtabs(8)) for line, _ in block]
            if widths != sorted(widths, reverse=True):
                problems.append(f"{path}: {fn.group(1)}() declares "
                                f"{', '.join(n for _, n in block)}: longest first, please")  # fmt: skip
    return problems


_UNUSED_MARK = re.compile(r"^\w[^;{}]*\([^;{}]*\b(__always_unused|__maybe_unused)\b[^;{}]*\)\s*\{",
                          re.M)  # fmt: skip


@rule(
    "no-unused-parameter-mark",
    "no parameter is marked __always_unused or __maybe_unused: the kernel builds with "
    "-Wno-unused-parameter (W=1 too), so the mark is noise a reviewer asks to drop",
)
def no_unused_parameter_mark(spec: Spec, files: Files) -> list[str]:
    return [f"{path}: {m.group(0).split('(')[0].split()[-1]}() marks a parameter {m.group(1)}: "
            "the kernel does not warn of unused parameters"
            for path, text in files.items() for m in _UNUSED_MARK.finditer(text)]  # fmt: skip


def review(spec: Spec, files: Files, skip: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """(rule name, problem) for every rule a spec's rendered files break, but those skipped."""
    return [
        (r.name, p)
        for r in RULES
        if r.applies(spec) and r.name not in skip
        for p in r.check(spec, files)
    ]


def rule_names() -> list[str]:
    return [r.name for r in RULES]


def skipped(spec: Spec, on_command_line: dict[str, str]) -> list[tuple[str, str, Mark | None]]:
    """(rule, reason, mark) of each rule not applied to ``spec``: its own, then the command line's."""
    own = spec.kernel.review.skip if spec.kernel.review else ()
    found: list[tuple[str, str, Mark | None]] = [(s.rule, s.reason, s.mark("rule")) for s in own]
    return found + [(name, reason, None) for name, reason in on_command_line.items()
                    if name not in {s.rule for s in own}]  # fmt: skip
