"""A catalogue of deliberate defects in the generated code.

Each mutant replaces one exact piece of the rendered files (in memory, never
on disk) and names what must catch it: ``compare`` (compile-and-compare
reports a mismatch), ``build`` (the compiler rejects it), or a review rule
of codegen/review.py.  Every anchor is built from the spec, so the catalogue
follows a spec change or fails loudly where an anchor is gone.
"""

from __future__ import annotations

from dataclasses import dataclass

from codegen.model import CONSTRAINT_LETTER, Spec
from codegen.render import f_sz, gate_lines, setup_conditions, worker_functions


@dataclass(frozen=True)
class Mutant:
    name: str
    where: str  # "header", "kthread", "delayed-work" or "sweeps" (both forms)
    old: str
    new: str
    caught_by: str
    more: tuple[tuple[str, str], ...] = ()  # further replacements of the same defect


def catalogue(spec: Spec) -> list[Mutant]:
    insn, k = spec.instruction, spec.kernel
    region, cov = f_sz(insn.table.region_size), f_sz(insn.table.coverage)
    a, c = (i.name for i in insn.inputs)  # RAX and RCX operands
    flag = next(o for o in insn.outputs if o.flag)
    codes = {x.effect: x for x in insn.function_codes.codes}
    const = {e: k.enum.prefix + x.name.upper() for e, x in codes.items()}
    enc = [b.byte for b in insn.encoding]
    byte = ".byte " + ", ".join(f"{b:#04x}" for b in enc)
    h, p = k.helper.name, k.helper.parameter
    s = k.sweep
    w = {x.kind: x for x in s.workers}
    kt, dw = w["kthread"], w["delayed-work"]
    rearm = f"#define {h.upper()}_REARM_DELAY_MS\t"
    cap = "pa_cap" if s.cap_log == "every-pass" else "pa_end"  # what the pass caps
    M = Mutant
    return [
        M("swap the RAX and RCX constraints", "header", f'"a" ({a}), "c" ({c})',
          f'"c" ({a}), "a" ({c})', "compare"),
        M("drop the prefix byte", "header", byte, ".byte " + ", ".join(f"{b:#04x}" for b in enc[1:]),
          "compare"),
        M("change the prefix byte", "header", byte, byte.replace(f"{enc[0]:#04x}", f"{enc[0] ^ 1:#04x}", 1),
          "compare"),
        M("change the ModRM byte", "header", byte, byte[: -4] + f"{enc[-1] ^ 1:#04x}", "compare"),
        M("drop the memory clobber", "header", ': "memory", "cc");', ': "cc");', "asm-clobbers"),
        M("test the wrong flag", "header", f'"=@cc{flag.flag[0]}" ({flag.name})',
          f'"=@ccz" ({flag.name})', "compare"),
        M("wrong alignment mask", "header", f"ALIGN_DOWN({p}, {region})",
          f"ALIGN_DOWN({p}, {f_sz(insn.table.region_size >> 9)})", "compare"),
        M("no alignment at all", "header", f"u64 rax = ALIGN_DOWN({p}, {region});", f"u64 rax = {p};",
          "compare"),
        M("the helper passes the wrong function code", "header", f"u64 rcx = {const['scan-and-set']};",
          f"u64 rcx = {const['read']};", "compare"),
        M("a renumbered function code", "header",
          f"{const['scan-and-set']} = {codes['scan-and-set'].value:#x},",
          f"{const['scan-and-set']} = {max(x.value for x in codes.values()) + 1:#x},", "compare"),
        M("the reviewer's ALIGN_DOWN(pa & SZ_1GB) sketch", "header", f"ALIGN_DOWN({p}, {region})",
          f"ALIGN_DOWN({p} & {region}B)", "build"),
        # where the cap is logged: in the pass a >= caps to the same end, only the log differs
        M("off by one at the cap (>=)", "sweeps",
          f"pa_end - pa_start > {cov}" + (")\n\t\tpr_info(" if s.cap_log == "at-setup" else ""),
          f"pa_end - pa_start >= {cov}" + (")\n\t\tpr_info(" if s.cap_log == "at-setup" else ""),
          "compare"),
        M("off by one region at the cap", "sweeps", f"{cap} = pa_start + {cov};",
          f"{cap} = pa_start + {cov} - {region};", "compare"),
        M("the start rounded up", "sweeps", f"ALIGN_DOWN(PFN_PHYS(min_low_pfn), {region})",
          f"ALIGN(PFN_PHYS(min_low_pfn), {region})", "compare"),
        M("the end rounded down", "sweeps", f"ALIGN(PFN_PHYS(max_pfn), {region})",
          f"ALIGN_DOWN(PFN_PHYS(max_pfn), {region})", "compare"),
        M("every other region skipped", "sweeps", f"pa += {region}) {{\n\t\ton_each_cpu_mask",
          f"pa += (phys_addr_t)2 * {region}) {{\n\t\ton_each_cpu_mask", "compare"),
        M("followers include the leader's siblings", "sweeps",
          "topology_is_primary_thread(cpu) &&\n\t\t    !cpumask_test_cpu(cpu, topology_sibling_cpumask(leader)))",
          "topology_is_primary_thread(cpu) &&\n\t\t    cpu != leader)", "compare"),
        M("followers include secondary threads", "sweeps", "if (topology_is_primary_thread(cpu) &&",
          "if (cpu_online(cpu) &&", "compare"),
        M("a missed cond_resched() in the leader loop", "sweeps", f"\t\t{h}(pa);\n\t\tcond_resched();",
          f"\t\t{h}(pa);", "compare"),
        M("a missed cond_resched() in the follower loop", "sweeps",
          f"{h}_on_cpu, &pa, true);\n\t\tcond_resched();", f"{h}_on_cpu, &pa, true);", "compare"),
        # on_each_cpu_mask() returns before the followers run: they read pa once it moved on
        M("followers called without waiting (wait=false)", "sweeps", f"{h}_on_cpu, &pa, true);",
          f"{h}_on_cpu, &pa, false);", "compare"),
        M("the leader can migrate (no migrate_disable)", "sweeps", "\tmigrate_disable();\n", "",
          "compare"),
        M("followers even when there are none", "sweeps",
          f"\tif (cpumask_empty(&{h}_followers))", f"\tif (0 && cpumask_empty(&{h}_followers))",
          "compare"),
        M("a kthread that never sleeps", "kthread", "\t\t\tschedule();\n\t\t\tcontinue;",
          "\t\t\tcontinue;", "compare"),
        M("a kthread that ignores requests", "kthread",
          f"if (!test_and_clear_bit(0, &{kt.name}_pending)) {{",
          f"if (!test_and_clear_bit(0, &{kt.name}_pending) || 1) {{", "compare"),
        # caught only by a request that arrives while a pass runs
        M("a request during a pass is lost (cleared after the pass)", "kthread",
          f"if (!test_and_clear_bit(0, &{kt.name}_pending)) {{", f"if (!test_bit(0, &{kt.name}_pending)) {{",
          "compare", ((f"\t\t{s.pass_name}();\n\t}}\n",
                       f"\t\t{s.pass_name}();\n\t\tclear_bit(0, &{kt.name}_pending);\n\t}}\n"),)),
        M("a kthread that ignores kthread_stop()", "kthread",
          "\t\tif (kthread_should_stop())\n\t\t\tbreak;\n", "", "compare"),
        M("a work that re-arms itself", "delayed-work", f"\t{s.pass_name}();\n}}\n\nstatic DECLARE",
          f"\t{s.pass_name}();\n\tmod_delayed_work({dw.workqueue}, (struct delayed_work *)work, 0);"
          "\n}\n\nstatic DECLARE",
          "compare"),
        M("requests that do not batch (queue, not mod)", "delayed-work",
          f"\tmod_delayed_work({dw.workqueue}, &{dw.name},", f"\tqueue_delayed_work({dw.workqueue}, &{dw.name},",
          "compare"),
        # caught only where a jiffy is not a millisecond (the harness has HZ = 250)
        M("the re-arm delay in milliseconds, not jiffies", "delayed-work",
          f"msecs_to_jiffies({h.upper()}_REARM_DELAY_MS)", f"{h.upper()}_REARM_DELAY_MS", "compare"),
        M("the wrong re-arm delay", "delayed-work", f"{rearm}{dw.rearm_delay_ms}",
          f"{rearm}{dw.rearm_delay_ms // 10}", "compare"),
        M("a log line that claims success", "sweeps", f'"{s.log_message}',
          f'"{s.log_message.replace("Attempt", "Enabled")}', "compare"),
    ] + enable_catalogue(spec)  # fmt: skip


def enable_catalogue(spec: Spec) -> list[Mutant]:
    """Defects in enabling: the feature gate, the MSR, the order of setup, the locks."""
    insn, k = spec.instruction, spec.kernel
    e, msr, h = k.enable, insn.msr, k.helper.name
    w = {x.kind: x for x in k.sweep.workers}
    kt, dw = w["kthread"], w["delayed-work"]
    fk, fd = worker_functions(kt), worker_functions(dw)
    conditions = setup_conditions(spec)  # the feature first, then each prerequisite

    def gate_of(kept: list[str]) -> str:
        return "".join(line + "\n" for line in gate_lines(kept))

    gate = gate_of(conditions)
    prerequisites = gate_of(conditions[1:])  # the gate without the feature
    region = f_sz(insn.table.region_size)
    value = f"ALIGN_DOWN(PFN_PHYS(min_low_pfn), {region}) | {msr.enable.name}"
    hp_var, online, offline = f"{h}_hp_state", f"{h}_cpu_online", f"{h}_cpu_offline"
    hp_setup = (f'\tret = cpuhp_setup_state({e.hotplug.state}, "{e.hotplug.name}",\n\t\t\t\t{online}, {offline});\n'
                "\tif (ret < 0) {\n")  # fmt: skip
    write = hp_setup  # what enables the MSRs at setup: the hotplug state's callback
    remove = f"\tcpuhp_remove_state_nocalls_cpuslocked({hp_var});\n"
    # teardown's end: the state removed and the MSRs cleared under one hold of the hotplug lock
    clear = f"\tcpus_read_lock();\n{remove}\t{h}_write_msr(0);\n\tcpus_read_unlock();\n"

    def locked(call: str) -> str:
        return f"\tcpus_read_lock();\n\t{call}\n\tcpus_read_unlock();\n"

    one = "if (cpu == cpumask_first_and(topology_sibling_cpumask(cpu), cpu_online_mask))"
    last = "if (cpumask_weight_and(topology_sibling_cpumask(cpu), cpu_online_mask) == 1)"
    callback = f"static int {online}(unsigned int cpu)\n{{\n"
    off_callback = f"static int {offline}(unsigned int cpu)\n{{\n"
    unused_off = (off_callback, off_callback.replace("static int ", "static int __maybe_unused "))
    alloc = (f'\t{dw.workqueue} = alloc_ordered_workqueue("{dw.workqueue}", 0);\n'
             f"\tif (!{dw.workqueue})\n\t\treturn -ENOMEM;\n\n")  # fmt: skip
    run = (f'\ttask = kthread_run({kt.name}, NULL, "{kt.name}");\n'
           "\tif (IS_ERR(task))\n\t\treturn PTR_ERR(task);\n\n")  # fmt: skip
    lock = f"\tguard(mutex)(&{e.mutex});\n"
    M = Mutant
    return [
        M("no feature gate", "sweeps", gate, prerequisites, "compare"),
        M("the feature gate after the first RMPOPT (in the pass)", "delayed-work", gate, prerequisites,
          "compare", ((f"\t\t{h}(pa);\n\t\tcond_resched();",
                       f"\t\t{h}(pa);\n\t\tif (!{e.check}({insn.cpuid.feature}))\n\t\t\tbreak;"
                       "\n\t\tcond_resched();"),)),
        M("the gate asks for another feature bit", "sweeps", f"{e.check}({insn.cpuid.feature})",
          f"{e.check}({insn.cpuid.feature} + 1)", "compare"),
        M("the MSR written on every SMT sibling, not once per core", "sweeps",
          "if (cpu == cpumask_first_and(topology_sibling_cpumask(cpu), cpu_online_mask))",
          "if (cpu_online(cpu))", "compare"),
        M("the MSR written on primary threads only", "sweeps",
          "if (cpu == cpumask_first_and(topology_sibling_cpumask(cpu), cpu_online_mask))",
          "if (topology_is_primary_thread(cpu))", "compare"),
        M("the MSR base not aligned", "sweeps", value,
          f"PFN_PHYS(min_low_pfn) | {msr.enable.name}", "compare"),
        M("the wrong enable bit", "sweeps", f"| {msr.enable.name})",
          f"| ({msr.enable.name} << 1))", "compare"),
        M("the workqueue allocated after the WRMSRs", "delayed-work", alloc + write,
          write + alloc, "setup-order"),
        M("the thread started after the WRMSRs", "kthread",
          run + write, write + run, "setup-order"),
        M("a request without the mutex", "delayed-work", lock + f"\t{fd['request']}();",
          f"\t{fd['request']}();", "compare"),
        M("a kthread request without the mutex", "kthread", lock + f"\t{fk['request']}();",
          f"\t{fk['request']}();", "compare"),
        M("teardown without the mutex", "delayed-work", lock + f"\t{fd['stop']}();",
          f"\t{fd['stop']}();", "compare"),
        M("a lock never released", "delayed-work", lock + f"\t{fd['request']}();",
          f"\tmutex_lock(&{e.mutex});\n\t{fd['request']}();", "compare"),
        M("the followers without cpus_read_lock()", "sweeps", "\tcpus_read_lock();\n\tmigrate_disable();",
          "\tmigrate_disable();", "compare"),
        M("a second setup starts again", "delayed-work", f"\tif ({dw.workqueue})\n\t\treturn 0;\n",
          "", "compare"),
        M("a second setup starts another thread", "kthread", f"\tif ({kt.name}_task)\n\t\treturn 0;\n",
          "", "compare"),
        M("a request after teardown still queues work", "delayed-work",
          f"\t{dw.workqueue} = NULL;\n{clear}", clear, "compare"),
        M("the MSRs not cleared at teardown", "sweeps", f"\t{h}_write_msr(0);\n", "", "compare",
          ((f"static void {h}_write_msr(u64 val)", f"static void __maybe_unused {h}_write_msr(u64 val)"),)),
        # caught only by a teardown that arrives while a pass runs: the pass faults
        M("the MSRs cleared before the kthread is stopped", "kthread",
          f"\tkthread_stop({kt.name}_task);\n\t{kt.name}_task = NULL;\n{clear}",
          f"{clear}\tkthread_stop({kt.name}_task);\n\t{kt.name}_task = NULL;\n", "compare"),
        M("the MSRs cleared before the work is cancelled", "delayed-work",
          f"\tcancel_delayed_work_sync(&{dw.name});\n", f"{clear}\tcancel_delayed_work_sync(&{dw.name});\n",
          "compare", ((f"\t{dw.workqueue} = NULL;\n{clear}", f"\t{dw.workqueue} = NULL;\n"),)),
        # CPU hotplug: a core that comes online while the instruction is enabled
        M("no CPU hotplug state: the MSRs written at setup only", "sweeps", clear, locked(f"{h}_write_msr(0);"),
          "compare",
          ((hp_setup + "\t\tkthread_stop(task);\n\t\treturn ret;\n\t}\n\n\t" + hp_var + " = ret;\n",
            locked(f"{h}_write_msr({value});")),
           (hp_setup + f"\t\tdestroy_workqueue({dw.workqueue});\n\t\t{dw.workqueue} = NULL;\n"
            "\t\treturn ret;\n\t}\n\n\t" + hp_var + " = ret;\n", locked(f"{h}_write_msr({value});")),
           ("\tstruct task_struct *task;\n\tint ret;\n", "\tstruct task_struct *task;\n"),
           (f"{{\n\tint ret;\n\n\tlockdep_assert_held(&{e.mutex});\n\tif ({dw.workqueue})",
            f"{{\n\tlockdep_assert_held(&{e.mutex});\n\tif ({dw.workqueue})"),
           (f"static enum cpuhp_state {hp_var};\n", ""),
           (callback, callback.replace("static int ", "static int __maybe_unused ")), unused_off)),
        M("the hotplug callback writes the MSR on every thread", "sweeps", callback + f"\t{one}",
          callback + "\tif (cpu_online(cpu))", "compare"),
        M("the hotplug callback writes the MSR on primary threads only", "sweeps", callback + f"\t{one}",
          callback + "\tif (topology_is_primary_thread(cpu))", "compare"),
        M("the hotplug state not removed at teardown", "sweeps", remove, "", "compare"),
        # the reviewer's finding on the 6.12 series: a CPU that goes offline between the removal
        # and the clear, or a core wholly offline at teardown, comes back with the MSR enabled
        M("the old teardown: state removed and MSRs cleared under separate holds, no teardown callback",
          "sweeps", clear, f"\tcpuhp_remove_state({hp_var});\n" + locked(f"{h}_write_msr(0);"), "compare",
          ((f"{online}, {offline});", f"{online}, NULL);"), unused_off)),
        M("the hotplug state removed before teardown takes the hotplug lock", "sweeps", clear,
          f"\tcpuhp_remove_state_nocalls({hp_var});\n" + locked(f"{h}_write_msr(0);"), "compare"),
        M("no teardown callback: a core offline at teardown keeps its MSR", "sweeps",
          f"{online}, {offline});", f"{online}, NULL);", "compare", (unused_off,)),
        M("the teardown callback clears the MSR on every thread that goes offline", "sweeps",
          off_callback + f"\t{last}", off_callback + "\tif (cpu_online(cpu))", "compare"),
        M("the hotplug callback takes the mutex", "sweeps", callback,
          callback + f"\tguard(mutex)(&{e.mutex});\n", "compare"),
        # without the calls at setup the self-deadlock does not show: lockdep's order check must
        M("the hotplug callback takes the mutex, setup writes the MSRs itself", "sweeps", callback,
          callback + f"\tguard(mutex)(&{e.mutex});\n", "compare",
          ((f"ret = cpuhp_setup_state({e.hotplug.state},", f"ret = cpuhp_setup_state_nocalls({e.hotplug.state},"),
           (f"\t{hp_var} = ret;\n", f"\t{hp_var} = ret;\n" + locked(f"{h}_write_msr({value});")))),
        M("the workqueue kept when the hotplug state cannot be set up", "delayed-work",
          f"\t\tdestroy_workqueue({dw.workqueue});\n\t\t{dw.workqueue} = NULL;\n\t\treturn ret;",
          "\t\treturn ret;", "compare"),
        M("the thread kept when the hotplug state cannot be set up", "kthread",
          "\t\tkthread_stop(task);\n\t\treturn ret;", "\t\treturn ret;", "compare"),
    ] + [
        M(f"prerequisite check missing: {p.name}", "sweeps", gate,
          gate_of([c for c in conditions if c != f"{p.check}({p.argument})"]), "compare")
        for p in e.requires
    ] + [
        M(f"the prerequisite check asks for another attribute: {p.name}", "sweeps",
          f"!{p.check}({p.argument})", f"!{p.check}({p.argument}_X)", "compare")
        for p in e.requires
    ] + ([
        M("the cap not logged at setup", "sweeps", f"\t{k.sweep.pass_name}_log_cap();\n", "", "build"),
    ] if k.sweep.cap_log == "at-setup" else [])  # fmt: skip


def helper_catalogue(spec: Spec) -> list[Mutant]:
    """Defects in a low-level helper with return codes, pointers or a software code."""
    insn, raw = spec.instruction, spec.kernel.raw_helper.name
    M = Mutant
    ins = [(i, f'"{CONSTRAINT_LETTER[i.register]}" ({i.name})') for i in insn.inputs]
    rc = insn.return_output()
    enc = [b.byte for b in insn.encoding]
    byte = ".byte " + ", ".join(f"{b:#04x}" for b in enc)
    out = [M("drop the prefix byte", "header", byte, ".byte " + ", ".join(f"{b:#04x}" for b in enc[1:]),
             "compare")]  # fmt: skip
    if len(ins) >= 2:
        (x, cx), (y, cy) = ins[-2], ins[-1]
        out.append(M(f"swap the {x.register.upper()} and {y.register.upper()} operands", "header",
                     f"{cx}, {cy}",
                     f'"{CONSTRAINT_LETTER[y.register]}" ({x.name}), "{CONSTRAINT_LETTER[x.register]}" ({y.name})',
                     "compare"))  # fmt: skip
    for i in insn.inputs:
        if i.type == "bool":
            out.append(M(f"{i.name} passed as unsigned long, not bool", "header", f"bool {i.name}",
                         f"unsigned long {i.name}", "compare"))  # fmt: skip
            break
    if rc is not None:
        out.append(M("the return code read from RDX", "header", f'"=a" ({rc.name})',
                     f'"=d" ({rc.name})', "compare"))  # fmt: skip
        if rc.type == "int":
            out.append(M("the return code zero-extended (unsigned int)", "header",
                         f"static inline int {raw}(", f"static inline unsigned int {raw}(",
                         "compare"))  # fmt: skip
        retry = [c for c in rc.codes if c.retry]
        if retry:
            out.append(M("no retry on a retry code", "header", f"{rc.name} == {retry[0].name}",
                         f"{rc.name} == {retry[0].name} + 1", "compare"))  # fmt: skip
            out.append(M("an unbounded retry loop", "header", " && retries++ < ", " && retries++ >= 0 && 1 < ",
                         "retry-bounded"))  # fmt: skip
    for o in insn.outputs:
        if o.software_code:
            out.append(M(f"{o.flag.upper()} set returns {rc.name}, not {o.software_code.name}", "header",
                         f"return {o.software_code.name};", f"return {rc.name};", "compare"))  # fmt: skip
    for i in insn.inputs:
        if i.type == "pointer":
            addr = next(j for j in insn.inputs if j is not i)
            # the pointer is then never used, which builds: the kernel passes -Wno-unused-parameter
            out.append(M("the pointer operand gets the address", "header",
                         f'"{CONSTRAINT_LETTER[i.register]}" ({i.name})',
                         f'"{CONSTRAINT_LETTER[i.register]}" ({addr.name})', "compare"))  # fmt: skip
    return out


def apply(mutant: Mutant, files: dict[str, str]) -> dict[str, str]:
    """The files with ``mutant`` applied; fails loudly when its anchor is gone."""
    out = dict(files)
    fragments = {"cpufeatures.h", "msr-index.h"} if any(p.endswith(".c") for p in files) else set()
    fragments |= {"sev.h"} if any(p.endswith("special_insns.h") for p in files) else set()
    targets = {
        "header": [p for p in files if p.endswith(".h") and p.rsplit("/", 1)[-1] not in fragments],
        "kthread": [p for p in files if p.endswith("-kthread.c")],
        "delayed-work": [p for p in files if p.endswith("-delayed-work.c")],
        "sweeps": [p for p in files if p.endswith(".c")],
    }[mutant.where]
    assert targets, mutant
    for path in targets:
        assert files[path].count(mutant.old) >= 1, f"{mutant.name}: anchor not found in {path}"
        out[path] = files[path].replace(mutant.old, mutant.new, 1)
        for old, new in mutant.more:
            if old in out[path]:
                out[path] = out[path].replace(old, new, 1)
    return out
