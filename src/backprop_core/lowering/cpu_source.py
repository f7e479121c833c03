"""The fused step printed as C for the CPU: vectorised across examples, on a pool of threads.

The per-example and after-phase lines are those of the CUDA kernel
(:class:`backprop_core.lowering.cuda_fused.cuda._Emitter` prints both); only the loop around
them differs.  ``bc_cpu_step_<variant>`` runs one whole iteration:

* the examples are cut into ``parts`` equal ranges, one per thread of a pool
  started once (:data:`POOL`), so the cut depends on ``parts`` alone;
* within a range, blocks of :data:`LANES` consecutive examples run as one SIMD
  loop (each row of X and Y is contiguous, so loads are vector loads);
  every sum keeps one partial per lane, ``acc[k][lane]``, so the order of the
  additions is fixed by the C text itself, whatever the vector width, the
  alignment of the data or the compiler's peeling;
* the lanes are then added in order, the parts in order, and the after phase
  (the gradients' scaling and the update) runs once.

So the same inputs and the same ``parts`` give the same bits, and a range's sums
(``bc_cpu_sums_<variant>``) are what the whole step adds up.

Transcendentals: glibc declares its vector math (libmvec) only under
``-ffast-math``, which would also assume no NaN or infinity ever occurs; the
preamble declares the few functions the equations use as SIMD functions
itself, so GCC calls libmvec's vector forms (at most 4 ulp from the correctly
rounded value, NaN and infinity handled as the scalar functions handle them)
while every other operation keeps IEEE semantics.  Without libmvec
(``BC_MVEC`` undefined) the same text calls the scalar functions.  In float32,
e^x, tanh, log and log1p are written out in the text instead (:data:`MATH_FLOAT32`,
with its bounds): inline, they leave the SIMD loop its registers, which a call takes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from ..activations import Activation
from ..equations import SIGMOID, Output
from .cuda_fused.cuda import DTYPES, VARIANTS, Emitter as _Emitter, indent as _indent, layout
from .cuda_fused.scalar import Program, lower_step

#: Examples per SIMD block: each sum keeps this many partials (one AVX-512 vector of float32, two of
#: float64); a constant of the text, so the order of additions is too.  32 for float32 measured a wash
#: at 2-4-1 (0.97x without the cost, 1.02x with it, by CPU time, interleaved).
LANES = 16
#: How each per-example line reads row ``row`` of an input: rows are contiguous.
CONTIGUOUS_LOAD = "{name}[{row} * {name}_s0 + e]"
#: A pool of threads started on first use and kept, one per core of the process, each pinned to its
#: own: part 0 of a step runs on the calling thread, parts 1.. on workers of the other cores.  Pinned,
#: because the scheduler does not undo two threads on one core: once a step's worker had been woken on
#: its caller's core (after the planner's calibrations had moved the threads about), every later step
#: woke it there again, queued behind its caller while the other core idled, and the step on two
#: threads took as long as on one (bench/plan_cpu.py; docs/performance.md).  Workers wait on a
#: condition variable of their own, never spin, so a machine whose other core is busy loses no more
#: than that core (an OpenMP barrier's spinning lost two orders of magnitude there), and only those
#: given a part are woken.  One step at a time per library.
POOL = r"""
typedef void (*bc_job)(void* context, int part);
#define BC_MAX_WORKERS 256
static struct {
    pthread_mutex_t lock, running;
    pthread_cond_t done;
    int workers, pending;
    bc_job job;
    void* context;
    pthread_cond_t wake[BC_MAX_WORKERS];
    long long ticket[BC_MAX_WORKERS];  // raised each time the worker is given a part
    int part[BC_MAX_WORKERS], core[BC_MAX_WORKERS];  // core: where the worker is pinned, or -1
} bc_pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};

static void* bc_worker(void* arg)
{
    const int slot = (int)(long)arg;
    pthread_mutex_lock(&bc_pool.lock);
    long long seen = 0;
    for (;;) {
        while (bc_pool.ticket[slot] == seen) pthread_cond_wait(&bc_pool.wake[slot], &bc_pool.lock);
        seen = bc_pool.ticket[slot];
        const int part = bc_pool.part[slot];
        const bc_job job = bc_pool.job;
        void* const context = bc_pool.context;
        pthread_mutex_unlock(&bc_pool.lock);
        job(context, part);
        pthread_mutex_lock(&bc_pool.lock);
        if (--bc_pool.pending == 0) pthread_cond_signal(&bc_pool.done);
    }
    return 0;
}

// The cores the pool's threads run on, one each: the process's (bc_set_cores), in order.
static int bc_cores[BC_MAX_WORKERS];
static int bc_core_count = 0;

void bc_set_cores(const int* const cores, const int count)
{
    pthread_mutex_lock(&bc_pool.lock);
    bc_core_count = 0;
    for (int i = 0; i < count && bc_core_count < BC_MAX_WORKERS; ++i)
#ifdef __linux__
        if (0 <= cores[i] && cores[i] < CPU_SETSIZE) bc_cores[bc_core_count++] = cores[i];
#else
        (void)cores;
#endif
    pthread_mutex_unlock(&bc_pool.lock);
}

// A child of fork() has none of its parent's threads: it starts its own.
static void bc_forget_workers(void) { bc_pool.workers = 0; }

// Starts worker `slot`, pinned to `core` where one is given and may be used, else where the scheduler puts it.
static int bc_start(const int slot, const int core)
{
    pthread_cond_init(&bc_pool.wake[slot], 0);
    bc_pool.ticket[slot] = 0, bc_pool.core[slot] = -1;
    pthread_t thread;
    pthread_attr_t attr;
    int ok = 0;
#ifdef __linux__
    if (core >= 0) {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(core, &one);
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_attr_setaffinity_np(&attr, sizeof one, &one) == 0)
            ok = pthread_create(&thread, &attr, bc_worker, (void*)(long)slot) == 0;
        pthread_attr_destroy(&attr);
        if (ok) bc_pool.core[slot] = core;
    }
#else
    (void)core;
#endif
    if (!ok) {  // no core given, or refused (a core gone offline, the process's cores changed since)
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        ok = pthread_create(&thread, &attr, bc_worker, (void*)(long)slot) == 0;
        pthread_attr_destroy(&attr);
    }
    return ok;
}

// Runs job(context, part) for part 0..parts-1, part 0 here; returns when all are done.
// Parts no worker of another core takes (more parts than cores, a worker that could not start) run here.
static void bc_run(bc_job job, void* context, int parts)
{
    if (parts <= 1) {  // here alone: no worker is woken
        job(context, 0);
        return;
    }
    pthread_mutex_lock(&bc_pool.running);
    pthread_mutex_lock(&bc_pool.lock);
    static int registered = 0;
    if (!registered) registered = pthread_atfork(0, 0, bc_forget_workers) == 0;
    // one worker per core where the cores are known, else as many as the parts beside this one
    const int wanted = bc_core_count > 0 ? bc_core_count : (parts - 1 < BC_MAX_WORKERS ? parts - 1 : BC_MAX_WORKERS);
    while (bc_pool.workers < wanted && bc_start(bc_pool.workers, bc_core_count > 0 ? bc_cores[bc_pool.workers] : -1))
        bc_pool.workers++;
#ifdef __linux__
    const int here = sched_getcpu();  // its worker would queue behind this thread: it gets no part
#else
    const int here = -1;
#endif
    int given = 1;
    bc_pool.job = job, bc_pool.context = context;
    for (int k = 0; k < bc_pool.workers && given < parts; ++k) {
        if (bc_pool.core[k] >= 0 && bc_pool.core[k] == here) continue;
        bc_pool.part[k] = given++;
        bc_pool.ticket[k]++;
        pthread_cond_signal(&bc_pool.wake[k]);
    }
    bc_pool.pending = given - 1;
    pthread_mutex_unlock(&bc_pool.lock);
    job(context, 0);
    for (int part = given; part < parts; ++part) job(context, part);
    pthread_mutex_lock(&bc_pool.lock);
    while (bc_pool.pending > 0) pthread_cond_wait(&bc_pool.done, &bc_pool.lock);
    pthread_mutex_unlock(&bc_pool.lock);
    pthread_mutex_unlock(&bc_pool.running);
}
"""
#: The math functions the fused lines may call that libmvec has vector forms of.
VECTOR_MATH = ("exp", "log", "log1p", "tanh", "pow")
#: float32 e^x, tanh, log and log1p written out, so the SIMD loop keeps its registers: a call to a
#: vector function clobbers every vector register, so each of the five calls a 2-4-1 tanh step makes
#: per block spilled and reloaded its sums (bench/cpu_fused_ab.py's --lever math measures it).
#: Only + - * /, comparisons and bit moves, so NaN and infinity come out as from expf, tanhf, logf and
#: log1pf.  Bounds (MATH_ULPS), tested over every 61st float32 of the ranges in test_cpu_fused.py with
#: NaN, infinities and signed zeros: e^x at most 2 ulp from the exact value (measured 1.0; Cody and
#: Waite's reduction and Cephes' polynomial; below FLT_MIN the subnormal is rounded once); tanh at most 6
#: ulp (measured 4.8; Eigen's rational function, |x| clamped to 9, beyond which it is within 1 ulp of 1;
#: the error is largest near 8.8, where float32's rounding of the two polynomials shows against a value
#: near 1); log at most 2 ulp (measured 0.8; Cephes' polynomial on [sqrt(1/2), sqrt(2))); log1p at most 3
#: ulp (measured 2.4; Kahan's log(1 + x) * x / ((1 + x) - 1), exact where 1 + x rounds to 1).
MATH_FLOAT32 = r"""
// float32 e^x and tanh, written out (cpu_source.MATH_FLOAT32 says why and how exact)
static inline float bc_float(const unsigned bits) { float f; __builtin_memcpy(&f, &bits, sizeof f); return f; }
static inline unsigned bc_bits(const float f) { unsigned bits; __builtin_memcpy(&bits, &f, sizeof bits); return bits; }
static inline float bc_expf(const float x)
{
    float c = x > 89.0f ? 89.0f : x;  // e^89 and e^-104 already round to infinity and 0; NaN stays NaN
    c = c < -104.0f ? -104.0f : c;
    const float shift = 0x1.8p23f;  // adding it rounds c / ln 2 to the integer n, kept in the low bits
    const float t = c * 1.44269504088896341f + shift;
    const float n = t - shift;
    const int k = (int)(bc_bits(t) - bc_bits(shift));  // unsigned: a NaN's bits may not overflow an int
    float r = c - n * 0.693359375f;  // c - n ln 2 with ln 2 in two parts: n times the first is exact
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const float y = p * r * r + r + 1.0f;  // e^r, |r| <= ln 2 / 2
    const int k1 = k >> 1, k2 = k - k1;  // 2^n as two normal factors: a subnormal result is rounded once
    return y * bc_float((unsigned)(k1 + 127) << 23) * bc_float((unsigned)(k2 + 127) << 23);
}
static inline float bc_tanhf(const float x)
{
    const float c = 9.0f < fabsf(x) ? copysignf(9.0f, x) : x;  // one select (GCC made two into four compares)
    const float z = c * c;
    float p = -2.76076847742355e-16f;
    p = p * z + 2.00018790482477e-13f;
    p = p * z + -8.60467152213735e-11f;
    p = p * z + 5.12229709037114e-08f;
    p = p * z + 1.48572235717979e-05f;
    p = p * z + 6.37261928875436e-04f;
    p = p * z + 4.89352455891786e-03f;
    float q = 1.19825839466702e-06f;
    q = q * z + 1.18534705686654e-04f;
    q = q * z + 2.26843463243900e-03f;
    q = q * z + 4.89352518554385e-03f;
    return c * (p / q);  // p / q first: a subnormal x is then rounded once
}
static inline float bc_logf(const float x)
{
    const float s = x < 0x1p-126f ? x * 0x1p23f : x;  // a subnormal made normal, its exponent put back below
    const unsigned b = bc_bits(s) - 0x3f3504f3u;  // the bits of sqrt(1/2): f below lands in [sqrt(1/2), sqrt(2))
    const float k = (float)((int)b >> 23) - (x < 0x1p-126f ? 23.0f : 0.0f);
    const float r = bc_float((b & 0x7fffffu) + 0x3f3504f3u) - 1.0f;
    const float z = r * r;
    float p = 7.0376836292e-2f;
    p = p * r - 1.1514610310e-1f;
    p = p * r + 1.1676998740e-1f;
    p = p * r - 1.2420140846e-1f;
    p = p * r + 1.4249322787e-1f;
    p = p * r - 1.6668057665e-1f;
    p = p * r + 2.0000714765e-1f;
    p = p * r - 2.4999993993e-1f;
    p = p * r + 3.3333331174e-1f;
    const float y = p * r * z + k * -2.12194440e-4f - 0.5f * z + r + k * 0.693359375f;
    // one comparison per select (a select on two combined ones kept GCC 12 from vectorising the loop)
    const float finite = x < BC_INF ? y : x;  // infinity is itself
    return x > 0.0f ? finite : (x == 0.0f ? -BC_INF : BC_NAN);  // below 0, and NaN: NaN
}
static inline float bc_log1pf(const float x)
{
    const float u = 1.0f + x;
    const float y = bc_logf(u) * (x / (u - 1.0f));  // Kahan's: the rounding of 1 + x cancels
    const float finite = x < BC_INF ? y : x;  // infinity, and NaN, are themselves
    return u == 1.0f ? x : finite;  // x where 1 + x rounds to 1
}
#define expf(x) bc_expf(x)
#define tanhf(x) bc_tanhf(x)
#define logf(x) bc_logf(x)
#define log1pf(x) bc_log1pf(x)
"""
#: The largest error in ulp that the tests allow the written-out functions.
MATH_ULPS = {"exp": 2.0, "tanh": 6.0, "log": 2.0, "log1p": 3.0}


@dataclass(frozen=True)
class CpuSource:
    """One network's C text and the layout of its buffers (as :class:`~backprop_core.lowering.cuda_fused.KernelSource`)."""

    text: str
    dtype: str
    shape: tuple
    activation: str
    output: str
    parameter_size: int
    output_size: int
    offsets: dict
    accumulators: dict


_PREAMBLE = """\
// Generated by backprop_core.lowering.cpu_source from equations.gradients and equations.update
// for a {shape} network with activation {activation} and a {output} output, in {dtype}.
// Change the equations, not this file: the step is derived from them.
#define _GNU_SOURCE  // pthread_attr_setaffinity_np, cpu_set_t
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
typedef {ctype} real;
#define BC_LANES {lanes}
#define BC_INF ((real)INFINITY)
#define BC_NAN ((real)NAN)
#ifdef BC_MVEC
// libmvec's vector forms (glibc declares them only under -ffast-math, which we do not use)
{vector_math}
#endif
{own_math}
// max that keeps a NaN from either side, as NumPy's max does
// (one comparison per select: GCC 12 vectorises no loop with a select on two combined)
static inline real bc_max(const real a, const real b) {{ const real m = a > b ? a : b; return a != a ? a : m; }}
{pool}"""


def _vector_declarations() -> str:
    lines = []
    for name in VECTOR_MATH:
        args = "double, double" if name == "pow" else "double"
        argsf = "float, float" if name == "pow" else "float"
        lines.append(f'__attribute__((simd("notinbranch"))) double {name}({args});')
        lines.append(f'__attribute__((simd("notinbranch"))) float {name}f({argsf});')
    return "\n".join(lines)


def _variant_text(variant: str, program: Program, dtype: str, offsets: dict) -> str:
    em = _Emitter(program, dtype, offsets, load=CONTIGUOUS_LOAD)
    before, body, _ = em.partial_parts()
    k = len(program.accumulators)
    zero = em.pr.literal(0.0)
    inputs = ", ".join(f"const real* __restrict__ {name}, const long long {name}_s0"
                       for name in program.example_inputs)
    names = ", ".join(f"{name}, {name}_s0" for name in program.example_inputs)
    scalars = ", ".join(f"const real {name}" for name in program.scalar_inputs)
    scalar_names = ", ".join(program.scalar_inputs)
    adds = [f"acc[{i}][l] += {em.pr.ref(c)};" for i, c in enumerate(program.accumulators)]
    lane_loop = ["const long long e = e0 + l;", *body, *adds]
    after = em.finalize_body("totals")
    return f"""
// ---- variant "{variant}": {k} sums over the examples ----
// The sums of examples [begin, end) into sums[0..{k}).
static void bc_range_{variant}({inputs}, const long long begin, const long long end, {scalars},
        const real* __restrict__ p, real* __restrict__ sums)
{{
{_indent(before, 1)}
    real acc[{k}][BC_LANES];
    for (int i = 0; i < {k}; ++i)
        for (int l = 0; l < BC_LANES; ++l) acc[i][l] = {zero};
    long long e0 = begin;
    for (; e0 + BC_LANES <= end; e0 += BC_LANES) {{
        #pragma omp simd
        for (int l = 0; l < BC_LANES; ++l) {{
{_indent(lane_loop, 3)}
        }}
    }}
    for (int l = 0; l < end - e0; ++l) {{  // the last, partial block: the same lines, lane by lane
{_indent(lane_loop, 2)}
    }}
    for (int i = 0; i < {k}; ++i) {{
        real s = {zero};
        for (int l = 0; l < BC_LANES; ++l) s += acc[i][l];
        sums[i] = s;
    }}
}}

void bc_cpu_sums_{variant}({inputs}, const long long begin, const long long end, {scalars},
        const real* __restrict__ p, real* __restrict__ sums)
{{
    bc_range_{variant}({names}, begin, end, {scalar_names}, p, sums);
}}

struct bc_args_{variant} {{
{_indent([*(f"const real* {name}; long long {name}_s0;" for name in program.example_inputs),
          "long long count;", *(f"real {name};" for name in program.scalar_inputs),
          "const real* p; real* scratch; int parts;"], 1)}
}};

static void bc_part_{variant}(void* context, int t)
{{
    const struct bc_args_{variant}* a = context;
    bc_range_{variant}({", ".join(f"a->{name}, a->{name}_s0" for name in program.example_inputs)},
                       a->count * t / a->parts, a->count * (t + 1) / a->parts,
                       {", ".join(f"a->{name}" for name in program.scalar_inputs)}, a->p,
                       a->scratch + (long long)t * {k});
}}

// One iteration over examples [0, count): parts equal ranges on the pool's threads, their sums
// added in order into totals, then the after phase writes out.  scratch holds parts * {k} reals.
void bc_cpu_step_{variant}({inputs}, const long long count, {scalars},
        const real* __restrict__ p, real* __restrict__ out, const int parts, real* __restrict__ scratch)
{{
    struct bc_args_{variant} a = {{{names}, count, {scalar_names}, p, scratch, parts}};
    bc_run(bc_part_{variant}, &a, parts);
    real totals[{k}];
    for (int i = 0; i < {k}; ++i) {{
        real s = {zero};
        for (int t = 0; t < parts; ++t) s += scratch[(long long)t * {k} + i];
        totals[i] = s;
    }}
{_indent(after, 1)}
}}
"""


@functools.lru_cache(maxsize=64)
def _source(n0: int, n1: int, n2: int, activation: Activation, output: Output, dtype: str) -> CpuSource:
    programs = {v: lower_step(n0, n1, n2, activation, with_cost, output=output) for v, with_cost in VARIANTS.items()}
    offsets, psize, osize = layout(programs["cost"])
    text = _PREAMBLE.format(shape=f"{n0}-{n1}-{n2}", activation=activation.name, output=output.name, dtype=dtype,
                            ctype=DTYPES[dtype], lanes=LANES, vector_math=_vector_declarations(),
                            own_math=MATH_FLOAT32 if dtype == "float32" else "", pool=POOL)
    text += "".join(_variant_text(v, p, dtype, offsets) for v, p in programs.items())
    return CpuSource(text=text, dtype=dtype, shape=(n0, n1, n2), activation=activation.name, output=output.name,
                     parameter_size=psize, output_size=osize, offsets=offsets,
                     accumulators={v: len(p.accumulators) for v, p in programs.items()})


def cpu_source(n0: int, n1: int, n2: int, activation: Activation, dtype: str, output: Output = SIGMOID) -> CpuSource:
    """The C text of the fused step (made once per shape, activation, output and dtype in a process)."""
    return _source(n0, n1, n2, activation, output, dtype)


