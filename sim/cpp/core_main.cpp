// Persistent simulator process for the SWAT core: a Verilator model driven from C++.
//
// Why: cocotb awaits and VPI calls cost Python time per core operation and cocotb's runner makes
// every signal public (about 7x slower model). This loop runs the model without VPI and without
// Python per cycle: the host (sim/harness.py, class CoreSim) sends commands on stdin, this
// process preloads the D/S memories directly in the model, runs the core to `done`, and sends
// the counters and C words back on stdout. One process serves any number of operations.
//
// Wire format (little-endian uint32 words unless said otherwise)
//   request : op, then the op's words, then the op's bytes
//   response: status (0 ok, else an error number), payload byte count, payload
//   OP_INFO   ()                                   -> words: version, rows, cols, d/s/c depth,
//                                                      d/c word bytes, trace support
//   OP_WRITE_D(base, count, ports) + count*DBYTES  -> ()
//   OP_WRITE_S(base, count, ports) + count*4       -> ()
//   OP_FILL_C (pattern: CBYTES bytes)              -> ()       (every C word := pattern)
//   OP_READ_C (base, count, ports)                 -> count*CBYTES bytes
//   OP_RUN    (m, k, n, s_len, read_c, timeout, s_bank) -> 10 words: cycles, busy, stall, idle,
//                                                      error, error_code, timed_out, started,
//                                                      log_oob, 0; then the C words
//                                                      ceil(m/rows)*n when read_c and ok
// A core with result logs (HAS_C_LOGS: one log per PE column, entries = C lanes | C address)
// has no C buffer: the harness gathers the logs into a C buffer of its own after every
// operation, so the commands above keep their meaning. After OP_FILL_C (which fills the logs
// too) the next OP_RUN counts log entries past the core's result counts that changed
// (log_oob: writes outside the result region).
//   OP_RESET  ()                                   -> ()
//   OP_TRACE  (on, path bytes) + path              -> ()       (FST; needs a tracing build)
//   OP_TICKS  ()                                   -> 5 words: clock cycles simulated (lo, hi),
//                                                      sel.exposed_cycles (0 without the unit),
//                                                      edges of the GEMM side (lo, hi; all of
//                                                      them but with HAS_GEMM_GATE)
//   OP_QUIT   ()                                   -> () and exit 0
// A core with the threshold-select unit (HAS_SELECT: sel_lanes > 0, two S buffers) also takes
//   OP_SEL_BEGIN(passes, count, read_blob, has_index, cmd: CMDWORDS words) + count int8
//                 elements (stream order) [+ count uint32 source indices when has_index: the
//                 unit's index side band]          -> ()   queued; the first queued command and
//                 its stream are fed to sel.cmd / sel.i by every following clock cycle (inside
//                 OP_RUN too: selects run while GEMMs run on the other S buffer), the next
//                 one starts when the unit is done with it
//   OP_SEL_WAIT(timeout)                           -> the report of the oldest operation
//                 (select_report: status words, then the blob read back from its S buffer at
//                 done when read_blob); runs the clock until it is done
// and OP_RUN's s_bank word names the S buffer the GEMM reads (ctrl.s_bank).
// The names of the model's ports and memories come from harness_config.h, which sim/harness.py
// writes from one table (sim/coreports.py), so a renamed port changes one place.

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "verilated.h"

enum Op : uint32_t {
    OP_QUIT = 0, OP_INFO = 1, OP_WRITE_D = 2, OP_WRITE_S = 3, OP_FILL_C = 4, OP_READ_C = 5,
    OP_RUN = 6, OP_RESET = 7, OP_TRACE = 8, OP_TICKS = 9, OP_SEL_BEGIN = 10, OP_SEL_WAIT = 11,
};
static const uint32_t PROTOCOL_VERSION = 3;

// --- word access: model variables of any width from/to little-endian bytes -----------------
static inline void put(CData& v, const uint8_t* p, int nb) { v = 0; std::memcpy(&v, p, nb); }
static inline void put(SData& v, const uint8_t* p, int nb) { v = 0; std::memcpy(&v, p, nb); }
static inline void put(IData& v, const uint8_t* p, int nb) { v = 0; std::memcpy(&v, p, nb); }
static inline void put(QData& v, const uint8_t* p, int nb) { v = 0; std::memcpy(&v, p, nb); }
template <std::size_t N>
static inline void put(VlWide<N>& v, const uint8_t* p, int nb) {
    for (std::size_t i = 0; i < N; ++i) v[i] = 0;
    std::memcpy(&v[0], p, nb);
}
static inline void get(const CData& v, uint8_t* p, int nb) { std::memcpy(p, &v, nb); }
static inline void get(const SData& v, uint8_t* p, int nb) { std::memcpy(p, &v, nb); }
static inline void get(const IData& v, uint8_t* p, int nb) { std::memcpy(p, &v, nb); }
static inline void get(const QData& v, uint8_t* p, int nb) { std::memcpy(p, &v, nb); }
template <std::size_t N>
static inline void get(const VlWide<N>& v, uint8_t* p, int nb) { std::memcpy(p, &v[0], nb); }

// the model, its geometry and the names of what the harness touches (generated)
#include "harness_config.h"
#ifdef HARNESS_TRACE
#include "verilated_fst_c.h"
#endif

// One eval per clock cycle. The model detects a rising clock by comparing clk with the copy it
// kept at its last eval (a member Verilator 5 names __Vtrigprevexpr___TOP__<clk>__0). Clearing
// that copy before setting clk = 1 makes every eval a rising edge, so the falling-edge eval is
// skipped: it only recomputes the input-driven combinational logic (no logic of the core is
// sensitive to the falling edge) and costs ~18 % of the instructions. Where the member does
// not exist (another Verilator), or when tracing, the harness evaluates both edges.
template <typename R, typename = void>
struct has_clk_prev : std::false_type {};
#ifdef CLK_PREV_MEMBER
template <typename R>
struct has_clk_prev<R, std::void_t<decltype(std::declval<R&>().CLK_PREV_MEMBER)>>
    : std::true_type {};
#endif
template <typename R>
static inline bool clear_clk_prev(R* root) {
#ifdef CLK_PREV_MEMBER
    if constexpr (has_clk_prev<R>::value) {
        root->CLK_PREV_MEMBER = 0;
        return true;
    }
#endif
    (void)root;
    return false;
}

// The select unit's own clock (HAS_SEL_GATE: a core built with sel_clock_gate). Verilator
// evaluates a clock domain's logic only at that domain's edges, so the harness gates the
// unit's clock like a clock-gating cell: an edge reaches the unit unless it is quiet
// (sel_quiet: idle and settled, so an edge with no command or beat offered changes none of its
// registers) and nothing is offered to it, and during reset. The core's cycles and the unit's
// behaviour are those of one shared clock; the idle unit (most cycles of a GEMM) costs nothing.
// SWAT_SIM_SEL_GATE=0 in the environment clocks the unit at every edge (the same results,
// checked by tests/test_harness.py). The same trick as for clk: the edge is a rising one when
// the unit's copy of its clock is cleared before the eval (sel_clk stays 1).
template <typename R, typename = void>
struct has_sel_clk_prev : std::false_type {};
#ifdef SEL_CLK_PREV_MEMBER
template <typename R>
struct has_sel_clk_prev<R, std::void_t<decltype(std::declval<R&>().SEL_CLK_PREV_MEMBER)>>
    : std::true_type {};
#endif
template <typename R>
static constexpr bool fast_edges() {
#ifdef HAS_SEL_GATE
    return has_clk_prev<R>::value && has_sel_clk_prev<R>::value;
#else
    return has_clk_prev<R>::value;
#endif
}
static bool env_off(const char* name) {
    const char* v = std::getenv(name);
    return v && v[0] == '0' && v[1] == 0;
}
static bool sel_gate_on() { return !env_off("SWAT_SIM_SEL_GATE"); }

// The core's own clock too (HAS_GEMM_GATE: a core built with gemm_clock_gate, whose `sync'
// domain holds only the GEMM side: loader, PE array, results, D buffer, S read ports,
// control; the select side's registers are on the unit's clock). The harness stops it while
// the GEMM side is idle: an edge reaches it while the core is busy, and for GEMM_SETTLE edges
// after the last one at which it was busy, reset, or saw an input of the GEMM side change
// (harness_gemm_inputs_changed: start, shape, D/S/C ports, s_bank) or a buffer memory written
// by the harness; GEMM_SETTLE is more than the deepest pipeline of the idle GEMM side, so its
// registers have reached their fixed point when the clock stops. The registers that read the
// S buffer at every edge (its read ports, the dispatcher's pointer word) then miss what the
// select unit writes meanwhile; their words are used only behind valid bits that a GEMM's
// start clears, and the first reads after start come two edges later (hw/dispatcher.py's
// HDR0-HDR2), by which time they hold the memory's words again. A select-only run (the
// compare job's sampled selects) then evaluates the unit and the S buffer's writes, not the
// idle GEMM datapath. SWAT_SIM_GEMM_GATE=0 clocks it at every edge (the same results,
// checked by tests/test_harness.py).
static bool gemm_gate_on() { return !env_off("SWAT_SIM_GEMM_GATE"); }

// Verilator runs the model's input-driven combinational logic (its `ico' region) at the start
// of every eval, whether or not an input changed: about a quarter of an eval of the core with
// the select unit, and most evals change no input (a GEMM runs hundreds of cycles on the same
// inputs; a select cycle's edge eval follows the settle eval that saw its inputs). sim/verilate.py
// patches the generated eval to run that region only when this flag is set; the harness sets it
// when an input differs from what the last eval saw (harness_inputs_changed, generated with the
// port list) or the harness wrote the model's memories directly. Logic fed by inputs and state
// is also in the clocked region (Verilator replicates it), so skipping the region when no input
// changed gives the same values. Without the patch (another Verilator) the flag is ignored.
bool harness_ico_pending = true;

// The model's own eval, Verilator's generated V<top>___024root___eval (harness_config.h names
// it; declared weak: null if a Verilator does not generate it). After the first eval (initial
// blocks, settle), calling it directly skips eval_step's per-call bookkeeping: a deleter of
// dynamic objects and the end-of-eval message queue, each behind a mutex, which this
// single-threaded model without classes or $display never needs: +6-10 % simulated cycles per
// CPU second on the 8x8 core, identical results. Tracing builds keep eval().
#if defined(ROOT_EVAL_FN) && !defined(HARNESS_TRACE)
void ROOT_EVAL_FN(ROOT_CLASS* vlSelf) __attribute__((weak));
#define HARNESS_DIRECT_EVAL 1
#endif

// --- I/O ----------------------------------------------------------------------------------
static void die(const char* what) {
    std::fprintf(stderr, "swat harness: %s\n", what);
    std::exit(3);
}
static void read_exact(void* buf, std::size_t n) {
    if (n && std::fread(buf, 1, n, stdin) != n) {
        if (std::feof(stdin)) std::exit(0);  // host went away: nothing left to do
        die("read error on stdin");
    }
}
static uint32_t read_u32() { uint32_t v; read_exact(&v, 4); return v; }
static void reply(uint32_t status, const void* payload, std::size_t n) {
    uint32_t hdr[2] = {status, static_cast<uint32_t>(n)};
    if (std::fwrite(hdr, 4, 2, stdout) != 2 || (n && std::fwrite(payload, 1, n, stdout) != n))
        std::exit(0);  // host closed the pipe
    std::fflush(stdout);
}

// --- the model ----------------------------------------------------------------------------
struct Harness {
    VerilatedContext ctx;
    std::unique_ptr<TOP_CLASS> top;
    uint64_t ticks = 0;
#ifdef HARNESS_TRACE
    std::unique_ptr<VerilatedFstC> tfp;
#endif
    std::vector<uint8_t> buf;
#ifdef HAS_C_LOGS
    std::vector<uint8_t> vc = std::vector<uint8_t>(std::size_t(C_DEPTH) * CBYTES);  // gathered C
    uint8_t fill_word[LOGBYTES] = {0};
    bool armed = false;  // logs hold the fill pattern: check what the next operation changes
#endif
    uint64_t gemm_start_tick = 0, gemm_done_tick = 0;  // of the last OP_RUN
    bool memories_written = true;  // the harness wrote model memories since the last eval
    bool evaluated = false;  // the first eval (initial blocks, settle) ran through top->eval()
#ifdef HAS_SEL_GATE
    bool sel_gate = sel_gate_on();  // gate the select unit's clock (SWAT_SIM_SEL_GATE)
#endif
#ifdef HAS_GEMM_GATE
    bool gemm_gate = gemm_gate_on();  // gate the core's clock (SWAT_SIM_GEMM_GATE)
    uint32_t gemm_settle = GEMM_SETTLE;  // edges the GEMM side is still clocked when idle
    uint64_t gemm_edges = 0;  // edges that reached it (for the speed figures)
#endif
#ifdef HAS_SELECT
    // the select operation being fed: its command, its stream (replayed `passes` times)
    struct SelectFeed {
        bool started = false, cmd_pending = true, cmd_taken = false, stream_done = false;
        bool read_blob = true;
        uint8_t cmd[CMDWORDS * 4] = {0};
        std::vector<int8_t> data;
        std::vector<uint32_t> index;  // source index per element (empty: none)
        uint32_t passes = 1, pass = 0;
        uint64_t beat = 0, beats = 0;
        uint64_t t_begin = 0, t_taken = 0, t_done = 0;
        uint32_t bank = 0;
    };
    std::deque<SelectFeed> sq;                   // queued operations, the first one running
    std::deque<std::vector<uint32_t>> finished;  // their reports, oldest first
#endif

    Harness() {
        ctx.traceEverOn(true);
        top.reset(new TOP_CLASS(&ctx));
        PORT_CLK(top) = 0;
        PORT_RST(top) = 0;
#ifdef HAS_SEL_GATE
        PORT_SEL_CLK(top) = 0;
#endif
        idle_inputs();
        eval();
        reset(3);
    }
    void idle_inputs() {
        PORT_D_WE(top) = 0; PORT_S_WE(top) = 0; PORT_START(top) = 0;
        PORT_D_ADDR(top) = 0; PORT_S_ADDR(top) = 0; PORT_C_ADDR(top) = 0;
        PORT_M(top) = 0; PORT_K(top) = 0; PORT_N(top) = 0; PORT_S_LEN(top) = 0;
        put(PORT_D_DATA(top), zeros(), DBYTES);
        PORT_S_DATA(top) = 0;
#ifdef PORT_C_EN
        PORT_C_EN(top) = 1;  // the C read port's enable (a top input starts at 0)
#endif
#ifdef HAS_SELECT
        PORT_S_BANK(top) = 0;
        PORT_SEL_I_VALID(top) = 0;
        PORT_SEL_CMD_VALID(top) = 0;
#endif
    }
    static const uint8_t* zeros() { static uint8_t z[256] = {0}; return z; }
    // every eval goes through here: the ico region runs when an input changed (see above)
    inline void eval() {
#ifdef HARNESS_INPUTS_CHANGED
        harness_ico_pending = harness_inputs_changed(top.get()) || memories_written;
#endif
        memories_written = false;
#ifdef HARNESS_DIRECT_EVAL
        if (evaluated && &ROOT_EVAL_FN != nullptr) {
            ROOT_EVAL_FN(top->rootp);
            return;
        }
        evaluated = true;
#endif
        top->eval();
    }
    inline void tick() {
#ifdef HAS_SELECT
        if (!sq.empty()) { select_tick(); return; }
#endif
        edge();
    }
    // whether this edge reaches the select unit (see has_sel_clk_prev above)
    inline bool sel_clock() {
#ifdef HAS_SEL_GATE
        return !sel_gate || !PORT_SEL_QUIET(top) || PORT_SEL_CMD_VALID(top) ||
               PORT_SEL_I_VALID(top) || PORT_RST(top)
#ifdef HAS_GEMM_GATE
               || PORT_S_WE(top)  // the S buffer's write ports are on the unit's clock
#endif
            ;
#else
        return true;
#endif
    }
    // whether this edge reaches the GEMM side (see gemm_gate_on above); before the eval, as
    // it reads memories_written
    inline bool gemm_clock() {
#ifdef HAS_GEMM_GATE
        bool changed = harness_gemm_inputs_changed(top.get());  // keeps its snapshot current
        if (gemm_gate) {
            if (changed || memories_written || PORT_BUSY(top) || PORT_START(top) || PORT_RST(top))
                gemm_settle = GEMM_SETTLE;
            else if (gemm_settle == 0)
                return false;
            else
                --gemm_settle;
        }
        ++gemm_edges;
#endif
        return true;
    }
    inline void edge() {
        bool sel_on = sel_clock();
        bool gemm_on = gemm_clock();
        (void)sel_on;
#ifndef HARNESS_TRACE
        if constexpr (fast_edges<std::remove_pointer_t<decltype(top->rootp)>>()) {
            if (gemm_on) clear_clk_prev(top->rootp);
#ifdef HAS_SEL_GATE
            if (sel_on) top->rootp->SEL_CLK_PREV_MEMBER = 0;
            PORT_SEL_CLK(top) = 1;
#endif
            PORT_CLK(top) = 1;
            eval();
            ++ticks;
            return;
        }
#endif
        PORT_CLK(top) = gemm_on ? 1 : 0;
#ifdef HAS_SEL_GATE
        PORT_SEL_CLK(top) = sel_on ? 1 : 0;
#endif
        eval();
#ifdef HARNESS_TRACE
        if (tfp) tfp->dump(ctx.time());
        ctx.timeInc(5);
#endif
        PORT_CLK(top) = 0;
#ifdef HAS_SEL_GATE
        PORT_SEL_CLK(top) = 0;
#endif
        eval();
#ifdef HARNESS_TRACE
        if (tfp) tfp->dump(ctx.time());
        ctx.timeInc(5);
#endif
        ++ticks;
    }
    void reset(int n) {
#ifdef HAS_SELECT
        finished.clear();
        if (!sq.empty()) {  // a reset ends the select operations queued
            sq.clear();
            PORT_SEL_I_VALID(top) = 0;
            PORT_SEL_CMD_VALID(top) = 0;
        }
#endif
        PORT_RST(top) = 1;
        for (int i = 0; i < n; ++i) tick();
        PORT_RST(top) = 0;
        tick();
    }

#ifdef HAS_SELECT
    // One clock cycle while a select operation is fed: offer the command until it is taken,
    // then the stream's beats (lanes elements, `last` on the final beat of each pass); the
    // handshakes are read after a combinational eval of the inputs, before the edge. When the
    // unit is done the operation's status (and blob) is recorded and the next queued one starts.
    // bits 0..width-1 of v OR-ed in at bit offset off, a byte at a time (a bit loop was a tenth
    // of the select loop's time with 32 lanes of 32-bit source indices)
    static void put_bits(uint8_t* buf, uint32_t off, uint64_t v, int width) {
        if (width < 64) v &= (uint64_t(1) << width) - 1;
        unsigned __int128 x = static_cast<unsigned __int128>(v) << (off & 7);
        for (int i = 0, n = (width + int(off & 7) + 7) >> 3; i < n; ++i)
            buf[(off >> 3) + i] |= uint8_t(x >> (8 * i));
    }
    void select_beat(const SelectFeed& f) {
        uint8_t b[IBYTES] = {0};
        uint64_t first = f.beat * SEL_LANES;
        std::size_t n = f.data.size();
        for (int j = 0; j < SEL_LANES; ++j)
            if (first + j < n) b[j] = static_cast<uint8_t>(f.data[first + j]);
        if (f.beat + 1 == f.beats) b[SEL_LANES] |= 1;  // `last` at bit 8*lanes
#if SEL_INDEX_WIDTH > 0
        if (!f.index.empty())  // the source index of lane j after `last`
            for (int j = 0; j < SEL_LANES; ++j)
                if (first + j < n)
                    put_bits(b, 8 * SEL_LANES + 1 + SEL_INDEX_WIDTH * j, f.index[first + j],
                             SEL_INDEX_WIDTH);
#endif
        put(PORT_SEL_I_PAYLOAD(top), b, IBYTES);
    }
    void select_tick() {
        SelectFeed& f = sq.front();
        if (!f.started) {
            f.started = true;
            f.t_begin = ticks;
            put(PORT_SEL_CMD_PAYLOAD(top), f.cmd, CMDBYTES);
        }
        bool ival = f.cmd_taken && !f.stream_done;
        PORT_SEL_CMD_VALID(top) = f.cmd_pending ? 1 : 0;
        PORT_SEL_I_VALID(top) = ival ? 1 : 0;
        // settle the readies for these inputs (no clock edge); without a handshake to read
        // (the unit finishing a pass after its stream) the edge's eval alone does the same
        if (f.cmd_pending || ival) eval();
        bool hs_c = f.cmd_pending && PORT_SEL_CMD_READY(top);
        bool hs_i = ival && PORT_SEL_I_READY(top);
        edge();
        if (hs_c) {
            f.cmd_pending = false;
            f.cmd_taken = true;
            f.t_taken = ticks;
            PORT_SEL_CMD_VALID(top) = 0;
            select_beat(f);
        }
        if (hs_i) {
            if (++f.beat == f.beats) {
                f.beat = 0;
                if (++f.pass == f.passes) f.stream_done = true;
            }
            if (!f.stream_done) select_beat(f);
        }
        if (f.cmd_taken && !hs_c && PORT_SEL_DONE(top)) {  // done (or error): record, next
            PORT_SEL_I_VALID(top) = 0;
            f.t_done = ticks;
            finished.push_back(select_report(f, 0));
            sq.pop_front();
        }
    }
    // status words of a finished (or abandoned) operation: timed_out, error, error_code, nnz,
    // s_len, bank, cycles, held_valid, exposed_cycles, tick stamps (lo, hi) of begin / command
    // taken / done / report / last GEMM start / last GEMM done, the held selection (HELDWORDS
    // words), then the blob words of its S buffer when asked for and no error
    std::vector<uint32_t> select_report(const SelectFeed& f, uint32_t timed_out) {
        std::vector<uint32_t> w = {
            timed_out, uint32_t(PORT_SEL_ERROR(top)), uint32_t(PORT_SEL_ERROR_CODE(top)),
            uint32_t(PORT_SEL_NNZ(top)), uint32_t(PORT_SEL_S_LEN(top)),
            uint32_t(PORT_SEL_BANK(top)), uint32_t(PORT_SEL_CYCLES(top)),
            uint32_t(PORT_SEL_HELD_VALID(top)), uint32_t(PORT_SEL_EXPOSED_CYCLES(top))};
        for (uint64_t t : {f.t_begin, f.t_taken, f.t_done, ticks, gemm_start_tick,
                           gemm_done_tick}) {
            w.push_back(uint32_t(t));
            w.push_back(uint32_t(t >> 32));
        }
        uint8_t held[HELDWORDS * 4] = {0};
        get(PORT_SEL_HELD(top), held, HELDBYTES);
        for (int i = 0; i < HELDWORDS; ++i) {
            uint32_t x;
            std::memcpy(&x, held + 4 * i, 4);
            w.push_back(x);
        }
        uint32_t s_len = PORT_SEL_S_LEN(top);
#ifdef HAS_MEM_S
        if (f.read_blob && !timed_out && !PORT_SEL_ERROR(top) && s_len <= S_DEPTH) {
            uint32_t base = f.bank * S_BANK_BASE;
            for (uint32_t a = 0; a < s_len; ++a) w.push_back(uint32_t(MEM_S_WORD(top, base + a)));
        }
#else
        (void)s_len;  // no S memory to read back (the blob is not returned)
#endif
        return w;
    }
    void sel_begin(uint32_t passes, uint32_t count, uint32_t read_blob, uint32_t has_index) {
        SelectFeed f;
        read_exact(f.cmd, sizeof f.cmd);
        f.data.resize(count);
        read_exact(f.data.data(), count);
        if (has_index) {
            f.index.resize(count);
            read_exact(f.index.data(), std::size_t(count) * 4);
        }
        if (passes < 1 || passes > 2 || (has_index && SEL_INDEX_WIDTH == 0)) {
            reply(1, nullptr, 0);
            return;
        }
        f.passes = passes;
        f.beats = (uint64_t(count) + SEL_LANES - 1) / SEL_LANES;
        f.stream_done = f.beats == 0;
        f.read_blob = read_blob != 0;
        f.bank = (f.cmd[CMD_BANK_BIT / 8] >> (CMD_BANK_BIT % 8)) & 1;
        sq.push_back(std::move(f));
        reply(0, nullptr, 0);
    }
    // Run the clock until the oldest queued operation is done (cycles without a GEMM: the
    // core counts them as exposed) and report it (select_report).
    void sel_wait(uint32_t timeout) {
        uint64_t waited = 0;
        while (finished.empty() && !sq.empty() && waited < timeout) { tick(); ++waited; }
        if (finished.empty()) {
            if (sq.empty()) { reply(1, nullptr, 0); return; }  // nothing was begun
            std::vector<uint32_t> w = select_report(sq.front(), 1);
            reset(2);  // drops the queue
            reply(0, w.data(), w.size() * 4);
            return;
        }
        std::vector<uint32_t> w = std::move(finished.front());
        finished.pop_front();
        reply(0, w.data(), w.size() * 4);
    }
#endif

    void write_d(uint32_t base, uint32_t count, bool ports) {
#ifndef HAS_MEM_D
        ports = true;  // no single memory of that buffer: write through the port
#endif
        buf.resize(std::size_t(count) * DBYTES);
        read_exact(buf.data(), buf.size());
        if (base + uint64_t(count) > D_DEPTH) { reply(1, nullptr, 0); return; }
        for (uint32_t i = 0; i < count; ++i) {
            const uint8_t* p = &buf[std::size_t(i) * DBYTES];
            if (ports) {
                PORT_D_WE(top) = 1; PORT_D_ADDR(top) = base + i;
                put(PORT_D_DATA(top), p, DBYTES);
                tick();
            } else {
#ifdef HAS_MEM_D
                PUT_D(top, base + i, p);
                memories_written = true;
#endif
            }
        }
        PORT_D_WE(top) = 0;
        reply(0, nullptr, 0);
    }
    void write_s(uint32_t base, uint32_t count, bool ports) {
#ifndef HAS_MEM_S
        ports = true;  // no single memory of that buffer: write through the port
#endif
        buf.resize(std::size_t(count) * 4);
        read_exact(buf.data(), buf.size());
        if (base + uint64_t(count) > S_MEM_DEPTH) { reply(1, nullptr, 0); return; }
        for (uint32_t i = 0; i < count; ++i) {
            uint32_t w;
            std::memcpy(&w, &buf[std::size_t(i) * 4], 4);
            if (ports) {
                PORT_S_WE(top) = 1; PORT_S_ADDR(top) = base + i; PORT_S_DATA(top) = w;
                tick();
            } else {
#ifdef HAS_MEM_S
                PUT_S(top, base + i, w);
                memories_written = true;
#endif
            }
        }
        PORT_S_WE(top) = 0;
        reply(0, nullptr, 0);
    }
    void fill_c() {
        buf.resize(CBYTES);
        read_exact(buf.data(), CBYTES);
        memories_written = true;
#ifdef HAS_C_LOGS
        for (uint32_t a = 0; a < C_DEPTH; ++a)
            std::memcpy(&vc[std::size_t(a) * CBYTES], buf.data(), CBYTES);
        std::memset(fill_word, 0xFF, LOGBYTES);  // the C address bits: all ones
        std::memcpy(fill_word, buf.data(), CBYTES);
        for (int j = 0; j < C_LOGS; ++j)
            for (uint32_t i = 0; i < C_DEPTH; ++i) harness_log_put(top.get(), j, i, fill_word);
        armed = true;
        reply(0, nullptr, 0);
#elif defined(HAS_MEM_C)
        for (uint32_t a = 0; a < C_DEPTH; ++a) put(MEM_C(top)[a], buf.data(), CBYTES);
        reply(0, nullptr, 0);
#else
        reply(2, nullptr, 0);  // no single C memory to fill
#endif
    }
#ifdef HAS_C_LOGS
    // entries of the result logs into the gathered C buffer; returns the entries written
    // outside the result region (past a log's count, or a C address beyond the buffer)
    uint32_t gather(uint32_t words) {
        uint32_t oob = 0;
        uint8_t w[LOGBYTES];
        for (int j = 0; j < C_LOGS; ++j) {
            uint32_t cnt = harness_log_count(top.get(), j);
            if (cnt > C_DEPTH) cnt = C_DEPTH;
            for (uint32_t i = 0; i < cnt; ++i) {
                harness_log_get(top.get(), j, i, w);
                uint64_t caddr = 0;
                for (int b = 0; b < LOGBYTES - CBYTES; ++b)
                    caddr |= uint64_t(w[CBYTES + b]) << (8 * b);
                caddr &= (uint64_t(1) << CAW) - 1;
                if (caddr < words) std::memcpy(&vc[caddr * CBYTES], w, CBYTES);
                else ++oob;
            }
            if (armed) {
                for (uint32_t i = cnt; i < C_DEPTH; ++i) {
                    harness_log_get(top.get(), j, i, w);
                    if (std::memcmp(w, fill_word, LOGBYTES) != 0) ++oob;
                }
            }
        }
        armed = false;
        return oob;
    }
#endif
    // C words [base, base+count) into out (appended)
    void read_c_into(std::vector<uint8_t>& out, uint32_t base, uint32_t count, bool ports) {
        std::size_t off = out.size();
        out.resize(off + std::size_t(count) * CBYTES);
#ifdef HAS_C_LOGS
        (void)ports;  // the gathered buffer (the logs' read port is not modelled here)
        std::memcpy(&out[off], &vc[std::size_t(base) * CBYTES], std::size_t(count) * CBYTES);
#else
#ifndef HAS_MEM_C
        ports = true;
#endif
        if (ports) {  // synchronous read port: the word of an address is out after the edge
            for (uint32_t a = base; a < base + count; ++a) {
                PORT_C_ADDR(top) = a;
                tick();
                get(PORT_C_DATA(top), &out[off + std::size_t(a - base) * CBYTES], CBYTES);
            }
            PORT_C_ADDR(top) = 0;
            return;
        }
#ifdef HAS_MEM_C
        for (uint32_t a = base; a < base + count; ++a)
            get(MEM_C(top)[a], &out[off + std::size_t(a - base) * CBYTES], CBYTES);
#endif
#endif  // HAS_C_LOGS
    }
    void read_c(uint32_t base, uint32_t count, bool ports) {
        if (base + uint64_t(count) > C_DEPTH) { reply(1, nullptr, 0); return; }
        std::vector<uint8_t> out;
        read_c_into(out, base, count, ports);
        reply(0, out.data(), out.size());
    }
    void run(uint32_t m, uint32_t k, uint32_t n, uint32_t s_len, uint32_t read_c_flag,
             uint32_t timeout, uint32_t s_bank) {
        PORT_M(top) = m; PORT_K(top) = k; PORT_N(top) = n; PORT_S_LEN(top) = s_len;
#ifdef HAS_SELECT
        PORT_S_BANK(top) = s_bank & 1;
#else
        (void)s_bank;
#endif
        PORT_START(top) = 1;
        gemm_start_tick = ticks;
        tick();
        PORT_START(top) = 0;
        uint32_t started = PORT_BUSY(top) ? 1 : 0;
        if (!started) {  // a core may take a cycle to raise busy; one that ignored start never does
            tick();
            started = PORT_BUSY(top) ? 1 : 0;
        }
        uint64_t waited = 0;
        if (!started) waited = timeout;  // ignored: report it, do not wait for a done that came
        while (!PORT_DONE(top) && waited < timeout) { tick(); ++waited; }
        gemm_done_tick = ticks;
        uint32_t timed_out = (started && PORT_DONE(top)) ? 0 : 1;
        uint32_t log_oob = 0;
#ifdef HAS_C_LOGS
        {
            uint64_t region = uint64_t((m + ROWS - 1) / ROWS) * n;
            log_oob = gather(region > C_DEPTH ? C_DEPTH : uint32_t(region));
        }
#endif
        uint32_t st[10] = {PORT_CYCLES(top), PORT_BUSY_CYCLES(top), PORT_STALL_CYCLES(top),
                           PORT_IDLE_CYCLES(top), uint32_t(PORT_ERROR(top)),
                           uint32_t(PORT_ERROR_CODE(top)), timed_out, started, log_oob, 0};
        std::vector<uint8_t> out(sizeof st);
        std::memcpy(out.data(), st, sizeof st);
        if (timed_out) {
            reset(2);
        } else if (read_c_flag && !st[4]) {
            uint64_t words = uint64_t((m + ROWS - 1) / ROWS) * n;
            if (words > C_DEPTH) words = C_DEPTH;
            read_c_into(out, 0, uint32_t(words), false);
        }
        reply(0, out.data(), out.size());
    }
    void trace(uint32_t on, const std::string& path) {
#ifdef HARNESS_TRACE
        if (on) {
            if (tfp) tfp->close();
            tfp.reset(new VerilatedFstC);
            top->trace(tfp.get(), 99);
            tfp->open(path.c_str());
        } else if (tfp) {
            tfp->close();
            tfp.reset();
        }
        reply(0, nullptr, 0);
#else
        (void)on; (void)path;
        reply(2, nullptr, 0);  // not a tracing build
#endif
    }
    void close() {
#ifdef HARNESS_TRACE
        if (tfp) { tfp->close(); tfp.reset(); }
#endif
        top->final();
    }
};

int main(int argc, char** argv) {
    Verilated::commandArgs(argc, argv);
    std::setvbuf(stdout, nullptr, _IOFBF, 1 << 16);
    std::setvbuf(stdin, nullptr, _IOFBF, 1 << 16);
    Harness h;
    for (;;) {
        uint32_t op = read_u32();
        switch (op) {
        case OP_QUIT:
            h.close();
            reply(0, nullptr, 0);
            return 0;
        case OP_INFO: {
            uint32_t info[13] = {PROTOCOL_VERSION, ROWS, COLS, D_DEPTH, S_DEPTH, C_DEPTH,
                                 DBYTES, CBYTES, HARNESS_HAS_TRACE, SEL_LANES, S_MEM_DEPTH,
                                 S_BANK_BASE, SEL_INDEX_WIDTH};
            reply(0, info, sizeof info);
            break;
        }
        case OP_WRITE_D: {
            uint32_t a = read_u32(), c = read_u32(), p = read_u32();
            h.write_d(a, c, p);
            break;
        }
        case OP_WRITE_S: {
            uint32_t a = read_u32(), c = read_u32(), p = read_u32();
            h.write_s(a, c, p);
            break;
        }
        case OP_FILL_C: h.fill_c(); break;
        case OP_READ_C: {
            uint32_t a = read_u32(), c = read_u32(), p = read_u32();
            h.read_c(a, c, p);
            break;
        }
        case OP_RUN: {
            uint32_t w[7];
            for (auto& x : w) x = read_u32();
            h.run(w[0], w[1], w[2], w[3], w[4], w[5], w[6]);
            break;
        }
#ifdef HAS_SELECT
        case OP_SEL_BEGIN: {
            uint32_t passes = read_u32(), count = read_u32(), read_blob = read_u32();
            uint32_t has_index = read_u32();
            h.sel_begin(passes, count, read_blob, has_index);
            break;
        }
        case OP_SEL_WAIT: h.sel_wait(read_u32()); break;
#endif
        case OP_RESET: h.reset(2); reply(0, nullptr, 0); break;
        case OP_TRACE: {
            uint32_t on = read_u32(), len = read_u32();
            std::string path(len, '\0');
            read_exact(&path[0], len);
            h.trace(on, path);
            break;
        }
        case OP_TICKS: {
            uint64_t g = h.ticks;  // edges that reached the GEMM side
#ifdef HAS_GEMM_GATE
            g = h.gemm_edges;
#endif
            uint32_t t[5] = {uint32_t(h.ticks), uint32_t(h.ticks >> 32), 0, uint32_t(g),
                             uint32_t(g >> 32)};
#ifdef HAS_SELECT
            t[2] = uint32_t(PORT_SEL_EXPOSED_CYCLES(h.top));
#endif
            reply(0, t, sizeof t);
            break;
        }
        default:
            std::fprintf(stderr, "swat harness: unknown op %u\n", op);
            return 4;
        }
    }
}
