// Minimal C++ main for a Verilated model with stream-shaped stimulus: clock, reset, the
// stream handshake inputs listed in SIMSPEED_HOLD_HIGH held at 1 (every input always valid,
// every output always ready: the array never stalls, as in a GEMM streamed without idle or
// backpressure), every other input random each cycle, no checking. The variant of
// sim_main.cpp (random bits on every input, so a stream consumer stalls half the time) that
// python -m tb.bench.simspeed also reports for the systolic rows (cpp_stream_*).
//
// The benchmark (tb/bench/simspeed.py) generates "simspeed_ports.h" for the top module:
//   #define SIMSPEED_INPUTS(X) X(name, width) ...   every input except clk and rst
//   #define SIMSPEED_HOLD_HIGH(X) X(name) ...      the inputs held at 1
// and builds this file with the same Verilog and hierarchy as the cocotb testbench.
//
// Usage: <binary> <cpu_seconds> [seed]
// Each cycle: clk falls, every input gets fresh random bits (the cocotb drivers write at the
// falling edge too), eval, clk rises, eval. It runs until the process has used
// <cpu_seconds> of CPU and prints one JSON line: cycles, cpu_s (CLOCK_PROCESS_CPUTIME_ID,
// the simulator process only) and wall_s.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>

#include "verilated.h"
#include "Vtop.h"
#include "simspeed_ports.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static inline uint64_t next_random() {   // xorshift64*
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static inline uint64_t mask(int bits) { return bits >= 64 ? ~0ull : ((1ull << bits) - 1); }

template <typename T>
static inline void randomize(T& port, int width) {
    port = static_cast<T>(next_random() & mask(width));
}

template <std::size_t N>
static inline void randomize(VlWide<N>& port, int width) {
    for (std::size_t w = 0; w < N; ++w) {
        int bits = width - 32 * static_cast<int>(w);
        uint32_t value = static_cast<uint32_t>(next_random());
        port[w] = bits >= 32 ? value : (value & static_cast<uint32_t>(mask(bits)));
    }
}

static double seconds(clockid_t clock) {
    timespec ts;
    clock_gettime(clock, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

int main(int argc, char** argv) {
    double budget = argc > 1 ? atof(argv[1]) : 2.0;
    if (argc > 2) rng_state ^= strtoull(argv[2], nullptr, 10) * 0x9E3779B97F4A7C15ull;
    auto context = std::make_unique<VerilatedContext>();
    auto top = std::make_unique<Vtop>(context.get());
    top->clk = 0;
    top->rst = 1;
    top->eval();
    for (int i = 0; i < 4; ++i) {
        top->clk = 1; top->eval();
        top->clk = 0; top->eval();
    }
    top->rst = 0;
    double cpu0 = seconds(CLOCK_PROCESS_CPUTIME_ID), wall0 = seconds(CLOCK_MONOTONIC);
    double cpu = cpu0;
    uint64_t cycles = 0;
    while (cpu - cpu0 < budget) {
        for (int i = 0; i < 256; ++i) {
            top->clk = 0;
#define SIMSPEED_RANDOMIZE(name, width) randomize(top->name, width);
            SIMSPEED_INPUTS(SIMSPEED_RANDOMIZE)
#define SIMSPEED_SET_HIGH(name) top->name = 1;
            SIMSPEED_HOLD_HIGH(SIMSPEED_SET_HIGH)
            top->eval();
            top->clk = 1;
            top->eval();
        }
        cycles += 256;
        cpu = seconds(CLOCK_PROCESS_CPUTIME_ID);
    }
    double wall = seconds(CLOCK_MONOTONIC) - wall0;
    top->final();
    printf("{\"cycles\": %llu, \"cpu_s\": %.6f, \"wall_s\": %.6f}\n",
           static_cast<unsigned long long>(cycles), cpu - cpu0, wall);
    return 0;
}
