"""A fused CPU kernel for the streaming softmax's fold (:class:`ablate.oracle.softmax.StreamingSoftmax`).

Folding a tile of logits ``[Q, n]`` into the running state takes torch seven
passes over the tile (max, subtract, clamp, exp, sum, the weighted sum and the
rescale); this kernel takes two per row (the row's max, then exp, sum and
weighted sum together), with ``exp`` vectorised by glibc's vector maths
library. It is compiled once per machine with the C++ compiler torch's
extension loader finds (``torch.utils.cpp_extension.load_inline``; cached under
``~/.cache/torch_extensions``). Where it cannot be built, or with
``ABLATE_FUSED=0``, the oracle uses the plain torch path: same results to
float rounding.
"""
from __future__ import annotations

import os
import sys
import warnings

import torch

_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <cmath>
#include <math.h>
#include <vector>
#ifdef __SSE__
#include <xmmintrin.h>
#endif

// exp inside the loops, for arguments in [floor, 0] (the caller clamps; floor >= -80 for float32).
// float: Cephes' expf (range reduction by ln 2, degree-6 polynomial, about 1 ulp), written out so that the
// loop vectorises; double: the C library's exp, which glibc's vector maths library vectorises.
static inline float loop_exp(float x) {
  const float n = __builtin_floorf(x * 1.44269504088896341f + 0.5f);
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n, a normal float for n >= -126
  return y * __builtin_bit_cast(float, bits);
}
static inline double loop_exp(double x) { return ::exp(x); }
static inline float scalar_exp(float x) { return ::expf(x); }
static inline double scalar_exp(double x) { return ::exp(x); }

// One row: sum_j e_j and sum_j e_j v_j with e_j = exp(max(x_j - shift, floor)), v of stride 1 (a plain
// function with restrict pointers, so that the loop vectorises as it would alone)
template <typename T>
static void row_sums(const T* __restrict x, const T* __restrict v, int64_t n, T shift, T floor_, T& s_out,
                     T& a_out) {
  T s = 0, a = 0;
  #pragma omp simd reduction(+:s, a)
  for (int64_t j = 0; j < n; ++j) {
    T t = x[j] - shift;
    t = t < floor_ ? floor_ : t;
    const T e = loop_exp(t);
    s += e;
    a += e * v[j];
  }
  s_out = s;
  a_out = a;
}

// One row's e_j = exp(max(x_j - shift, floor)) into e, and their sum
template <typename T>
static T row_exps(const T* __restrict x, int64_t n, T shift, T floor_, T* __restrict e) {
  T s = 0;
  #pragma omp simd reduction(+:s)
  for (int64_t j = 0; j < n; ++j) {
    T t = x[j] - shift;
    t = t < floor_ ? floor_ : t;
    e[j] = loop_exp(t);
    s += e[j];
  }
  return s;
}

// Fold logits [Q, n] (row stride ldl) with values [n, C] into the state m [Q] (running max), l [Q]
// (normaliser), acc [Q, C] (numerator), in place. A state row with l == 0 is empty.
template <typename T>
static void fold_rows(const T* L, int64_t ldl, const T* V, int64_t C, int64_t n, T* m, T* l, T* acc,
                      int64_t Q, T floor_) {
  at::parallel_for(0, Q, 8, [&](int64_t begin, int64_t end) {
#ifdef __SSE__
    // flush denormals to zero while folding: a clamped term times a small value can be one, and x86 takes
    // about a hundred cycles per denormal operation (their weight, below 1e-38, does not matter here)
    const unsigned int csr = _mm_getcsr();
    _mm_setcsr(csr | 0x8040);
#endif
    std::vector<T> p(C == 1 ? 0 : n);
    std::vector<T> a(C);
    for (int64_t q = begin; q < end; ++q) {
      const T* x = L + q * ldl;
      T mx = x[0];
      #pragma omp simd reduction(max:mx)
      for (int64_t j = 0; j < n; ++j) mx = x[j] > mx ? x[j] : mx;
      const bool empty = l[q] == T(0);
      const T m_new = empty ? mx : (m[q] > mx ? m[q] : mx);
      const T scale = empty ? T(0) : scalar_exp(m[q] - m_new);
      T s = 0;
      if (C == 1) {
        T a0 = 0;
        row_sums<T>(x, V, n, m_new, floor_, s, a0);
        acc[q] = acc[q] * scale + a0;
      } else {
        s = row_exps<T>(x, n, m_new, floor_, p.data());
        for (int64_t c = 0; c < C; ++c) a[c] = 0;
        for (int64_t j = 0; j < n; ++j)
          for (int64_t c = 0; c < C; ++c) a[c] += p[j] * V[j * C + c];
        for (int64_t c = 0; c < C; ++c) acc[q * C + c] = acc[q * C + c] * scale + a[c];
      }
      l[q] = l[q] * scale + s;
      m[q] = m_new;
    }
#ifdef __SSE__
    _mm_setcsr(csr);
#endif
  });
}

void fold_(torch::Tensor logits, torch::Tensor values, torch::Tensor m, torch::Tensor l, torch::Tensor acc,
           double floor_) {
  TORCH_CHECK(logits.dim() == 2 && logits.stride(1) == 1, "logits must be [Q, n] with unit column stride");
  TORCH_CHECK(values.dim() == 2 && values.is_contiguous() && values.size(0) == logits.size(1), "values [n, C]");
  TORCH_CHECK(m.is_contiguous() && l.is_contiguous() && acc.is_contiguous(), "state must be contiguous");
  TORCH_CHECK(m.size(0) == logits.size(0) && acc.size(1) == values.size(1), "state shape mismatch");
  const int64_t Q = logits.size(0), n = logits.size(1), C = values.size(1);
  if (Q == 0 || n == 0) return;
  AT_DISPATCH_FLOATING_TYPES(logits.scalar_type(), "fold_", [&] {
    fold_rows<scalar_t>(logits.data_ptr<scalar_t>(), logits.stride(0), values.data_ptr<scalar_t>(), C, n,
                        m.data_ptr<scalar_t>(), l.data_ptr<scalar_t>(), acc.data_ptr<scalar_t>(), Q,
                        static_cast<scalar_t>(floor_));
  });
}
"""

_module = None
_tried = False


CFLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp"]
LDFLAGS = ["-fopenmp", "-lmvec"]


def _compiler() -> str:
    import subprocess

    cxx = os.environ.get("CXX", "c++")
    try:
        return cxx + subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=10).stdout.split("\n")[0]
    except (OSError, subprocess.SubprocessError):
        return cxx


def build_tag() -> str:
    """A short hash of everything that makes the binary differ: the source, the flags, torch's version and
    build (its ABI), Python's version, the compiler and the CPU's feature flags (the build uses
    ``-march=native``). Two environments with the same torch share one build; a different torch, compiler or
    CPU never loads another's, and so never rebuilds over it."""
    import hashlib
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        flags = ""
    parts = [_SOURCE, " ".join(CFLAGS + LDFLAGS), torch.__version__, str(torch.version.git_version),
             platform.python_version(), _compiler(), platform.machine(), flags]
    return hashlib.sha1("\0".join(parts).encode()).hexdigest()[:12]


def kernel():
    """The compiled module (with ``fold_``), or None where it cannot be built or ``ABLATE_FUSED=0``."""
    global _module, _tried
    if _tried:
        return _module
    _tried = True
    if os.environ.get("ABLATE_FUSED", "1") == "0":
        return None
    try:
        from torch.utils.cpp_extension import load_inline

        # the venv's ninja (a dependency) when the interpreter was started without activating the venv
        os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
        _module = load_inline(name=f"ablate_fused_fold_{build_tag()}", cpp_sources=_SOURCE, functions=["fold_"],
                              extra_cflags=CFLAGS, extra_ldflags=LDFLAGS, verbose=False)
    except Exception as err:  # no compiler, no ninja, ...: the torch path gives the same results, slower
        warnings.warn(f"the oracle's fused softmax kernel could not be built ({type(err).__name__}: "
                      f"{str(err).strip().splitlines()[-1] if str(err).strip() else ''}); using plain torch ops")
        _module = None
    return _module


def fold_(logits: torch.Tensor, values: torch.Tensor, m: torch.Tensor, l: torch.Tensor, acc: torch.Tensor,
          floor: float) -> bool:
    """Fold ``logits [Q, n]`` with ``values [n, C]`` into the state ``m [Q]``, ``l [Q]``, ``acc [Q, C]`` in
    place (an empty state row has ``l == 0``); shifted logits are clamped at ``floor`` before ``exp``.
    Returns False, touching nothing, where the kernel does not apply (not on the CPU, not float32/float64,
    or not built): the caller then folds with torch ops."""
    if (logits.device.type != "cpu" or logits.dtype not in (torch.float32, torch.float64) or logits.dim() != 2
            or values.dtype != logits.dtype or m.dtype != logits.dtype or floor < -80.0 and logits.dtype == torch.float32):
        return False
    module = kernel()
    if module is None:
        return False
    if logits.stride(1) != 1:
        logits = logits.contiguous()
    module.fold_(logits, values.contiguous(), m, l, acc, float(floor))
    return True
