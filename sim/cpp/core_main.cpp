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
//   OP_RUN    (m, k, n, s_len, read_c, timeout)    -> 10 words: cycles, busy, stall, idle,
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
//   OP_TICKS  ()                                   -> 2 words: clock cycles simulated (lo, hi)
//   OP_QUIT   ()                                   -> () and exit 0
// The names of the model's ports and memories come from harness_config.h, which sim/harness.py
// writes from one table (sim/coreports.py), so a renamed port changes one place.

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "verilated.h"

enum Op : uint32_t {
    OP_QUIT = 0, OP_INFO = 1, OP_WRITE_D = 2, OP_WRITE_S = 3, OP_FILL_C = 4, OP_READ_C = 5,
    OP_RUN = 6, OP_RESET = 7, OP_TRACE = 8, OP_TICKS = 9,
};
static const uint32_t PROTOCOL_VERSION = 2;

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

    Harness() {
        ctx.traceEverOn(true);
        top.reset(new TOP_CLASS(&ctx));
        PORT_CLK(top) = 0;
        PORT_RST(top) = 0;
        idle_inputs();
        top->eval();
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
    }
    static const uint8_t* zeros() { static uint8_t z[256] = {0}; return z; }
    inline void tick() {
#ifndef HARNESS_TRACE
        if (clear_clk_prev(top->rootp)) {
            PORT_CLK(top) = 1;
            top->eval();
            ++ticks;
            return;
        }
#endif
        PORT_CLK(top) = 1;
        top->eval();
#ifdef HARNESS_TRACE
        if (tfp) tfp->dump(ctx.time());
        ctx.timeInc(5);
#endif
        PORT_CLK(top) = 0;
        top->eval();
#ifdef HARNESS_TRACE
        if (tfp) tfp->dump(ctx.time());
        ctx.timeInc(5);
#endif
        ++ticks;
    }
    void reset(int n) {
        PORT_RST(top) = 1;
        for (int i = 0; i < n; ++i) tick();
        PORT_RST(top) = 0;
        tick();
    }

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
                put(MEM_D(top)[base + i], p, DBYTES);
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
        if (base + uint64_t(count) > S_DEPTH) { reply(1, nullptr, 0); return; }
        for (uint32_t i = 0; i < count; ++i) {
            uint32_t w;
            std::memcpy(&w, &buf[std::size_t(i) * 4], 4);
            if (ports) {
                PORT_S_WE(top) = 1; PORT_S_ADDR(top) = base + i; PORT_S_DATA(top) = w;
                tick();
            } else {
#ifdef HAS_MEM_S
                MEM_S(top)[base + i] = w;
#endif
            }
        }
        PORT_S_WE(top) = 0;
        reply(0, nullptr, 0);
    }
    void fill_c() {
        buf.resize(CBYTES);
        read_exact(buf.data(), CBYTES);
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
             uint32_t timeout) {
        PORT_M(top) = m; PORT_K(top) = k; PORT_N(top) = n; PORT_S_LEN(top) = s_len;
        PORT_START(top) = 1;
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
            uint32_t info[9] = {PROTOCOL_VERSION, ROWS, COLS, D_DEPTH, S_DEPTH, C_DEPTH,
                                DBYTES, CBYTES, HARNESS_HAS_TRACE};
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
            uint32_t w[6];
            for (auto& x : w) x = read_u32();
            h.run(w[0], w[1], w[2], w[3], w[4], w[5]);
            break;
        }
        case OP_RESET: h.reset(2); reply(0, nullptr, 0); break;
        case OP_TRACE: {
            uint32_t on = read_u32(), len = read_u32();
            std::string path(len, '\0');
            read_exact(&path[0], len);
            h.trace(on, path);
            break;
        }
        case OP_TICKS: {
            uint32_t t[2] = {uint32_t(h.ticks), uint32_t(h.ticks >> 32)};
            reply(0, t, sizeof t);
            break;
        }
        default:
            std::fprintf(stderr, "swat harness: unknown op %u\n", op);
            return 4;
        }
    }
}
