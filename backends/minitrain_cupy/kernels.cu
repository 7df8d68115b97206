// The CUDA C sources of the CuPy backend's fused kernels (minitrain_cupy._kernels.SOURCE): templates over the
// float type, instantiated as <name>_f32 and <name>_f64, each looping over its work with a grid-stride loop so
// that the same source compiles as C++ for the CPU (see _kernels.CPU_PRELUDE).

#define GRID_LOOP(i, n) for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
                             i += (long long)blockDim.x * gridDim.x)

template <typename T> __device__ __forceinline__ T m_exp(T x);
template <> __device__ __forceinline__ float m_exp(float x) { return expf(x); }
template <> __device__ __forceinline__ double m_exp(double x) { return exp(x); }
template <typename T> __device__ __forceinline__ T m_expm1(T x);
template <> __device__ __forceinline__ float m_expm1(float x) { return expm1f(x); }
template <> __device__ __forceinline__ double m_expm1(double x) { return expm1(x); }
template <typename T> __device__ __forceinline__ T m_log1p(T x);
template <> __device__ __forceinline__ float m_log1p(float x) { return log1pf(x); }
template <> __device__ __forceinline__ double m_log1p(double x) { return log1p(x); }
template <typename T> __device__ __forceinline__ T m_tanh(T x);
template <> __device__ __forceinline__ float m_tanh(float x) { return tanhf(x); }
template <> __device__ __forceinline__ double m_tanh(double x) { return tanh(x); }
template <typename T> __device__ __forceinline__ T m_erf(T x);
template <> __device__ __forceinline__ float m_erf(float x) { return erff(x); }
template <> __device__ __forceinline__ double m_erf(double x) { return erf(x); }
template <typename T> __device__ __forceinline__ T m_sqrt(T x);
template <> __device__ __forceinline__ float m_sqrt(float x) { return sqrtf(x); }
template <> __device__ __forceinline__ double m_sqrt(double x) { return sqrt(x); }
template <typename T> __device__ __forceinline__ T m_abs(T x) { return x < T(0) ? -x : x; }
template <typename T> __device__ __forceinline__ T m_sign(T x) { return x > T(0) ? T(1) : (x < T(0) ? T(-1) : x); }
template <typename T> __device__ __forceinline__ T m_max(T a, T b) { return a > b ? a : b; }
template <typename T> __device__ __forceinline__ T m_inf() { volatile T zero = T(0); return T(1) / zero; }

// ----------------------------------------------------------------------------------------- activations
template <typename T> __device__ __forceinline__ T act_value(T x, int code, T a) {
    const T zero = T(0), one = T(1), half = T(0.5);
    switch (code) {
    case 1: return x < zero ? zero : x;
    case 2: return x > zero ? x : x * a;
    case 3: return x > zero ? x : a * m_expm1(x);
    case 4: return half * x * (one + m_erf(x * T(0.70710678118654752440)));
    case 5: return half * x * (one + m_tanh(T(0.79788456080286535588) * (x + T(0.044715) * x * x * x)));
    case 6: return one / (one + m_exp(-x));
    case 7: return m_tanh(x);
    case 8: return m_log1p(m_exp(-m_abs(x))) + m_max(x, zero);
    default: return x;
    }
}

// the derivative from the output s (from the pre-activation for gelu and gelu_tanh)
template <typename T> __device__ __forceinline__ T act_grad(T s, int code, T a) {
    const T zero = T(0), one = T(1), half = T(0.5);
    switch (code) {
    case 1: return s > zero ? one : zero;
    case 2: return s > zero ? one : a;
    case 3: return s > zero ? one : s + a;
    case 4: return half * (one + m_erf(s * T(0.70710678118654752440)))
                   + s * m_exp(-half * s * s) * T(0.39894228040143267794);
    case 5: {
        const T c = T(0.044715), k = T(0.79788456080286535588);
        T t = m_tanh(k * (s + c * s * s * s));
        return half * (one + t) + half * s * (one - t * t) * k * (one + T(3) * c * s * s);
    }
    case 6: return s * (one - s);
    case 7: return one - s * s;
    case 8: return -m_expm1(-s);
    default: return one;
    }
}

template <typename T> __device__ void act_impl(const T* z, T* y, long long n, int code, T a) {
    GRID_LOOP(i, n) { y[i] = act_value(z[i], code, a); }
}

template <typename T> __device__ void bias_act_impl(T* z, const T* b, long long n, long long cols, int code, T a) {
    GRID_LOOP(i, n) { z[i] = act_value(z[i] + b[i % cols], code, a); }
}

template <typename T>
__device__ void act_backward_impl(const T* g, const T* s, T* out, long long n, int code, T a) {
    GRID_LOOP(i, n) { out[i] = g[i] * act_grad(s[i], code, a); }
}

// a thread per column: out = g * act'(s) and the column sums of out (the bias gradient); out may be g
template <typename T>
__device__ void bias_act_backward_impl(const T* g, const T* s, T* out, T* db, long long rows, long long cols,
                                       int code, T a) {
    GRID_LOOP(j, cols) {
        double acc = 0.0;
        for (long long r = 0; r < rows; ++r) {
            long long k = r * cols + j;
            T v = code == 0 ? g[k] : g[k] * act_grad(s[k], code, a);
            out[k] = v;
            acc += (double)v;
        }
        db[j] = (T)acc;
    }
}

// ----------------------------------------------------------------------------------------- losses
// a thread per row: softmax cross-entropy against class indices (a negative one counts from the end);
// grad = p * sum(wq) - wq with the smoothed target q; out-of-bounds labels are counted into bad[0]
template <typename T>
__device__ void softmax_xent_index_impl(const T* x, const long long* t, const T* w, T* loss, T* grad, long long n,
                                        long long c, T smoothing, long long* bad) {
    GRID_LOOP(i, n) {
        const T* xi = x + i * c;
        T* gi = grad + i * c;
        long long k = t[i];
        if (k < 0) k += c;
        bool bad_label = k < 0 || k >= c;
        if (bad_label) k = 0;
        bad[i] = bad_label ? 1 : 0;
        double m = (double)xi[0];
        for (long long j = 1; j < c; ++j) m = m_max(m, (double)xi[j]);
        double s = 0.0;
        for (long long j = 0; j < c; ++j) { T e = m_exp(xi[j] - (T)m); gi[j] = e; s += (double)e; }
        double lse = log(s), off = (double)smoothing / (double)c, on = 1.0 - (double)smoothing + off;
        double total = 0.0, acc = 0.0;
        for (long long j = 0; j < c; ++j) {
            double wq = (j == k ? on : off) * (double)w[j];
            total += wq;
            acc -= wq * ((double)xi[j] - m - lse);
        }
        loss[i] = bad_label ? m_inf<T>() - m_inf<T>() : (T)acc;  // NaN: the caller's non-finite check sees it
        for (long long j = 0; j < c; ++j) {
            double wq = (j == k ? on : off) * (double)w[j];
            gi[j] = (T)((double)gi[j] / s * total - wq);
        }
    }
}

template <typename T>
__device__ void softmax_xent_prob_impl(const T* x, const T* q, const T* w, T* loss, T* grad, long long n,
                                       long long c, T smoothing) {
    GRID_LOOP(i, n) {
        const T* xi = x + i * c;
        const T* qi = q + i * c;
        T* gi = grad + i * c;
        double m = (double)xi[0];
        for (long long j = 1; j < c; ++j) m = m_max(m, (double)xi[j]);
        double s = 0.0;
        for (long long j = 0; j < c; ++j) { T e = m_exp(xi[j] - (T)m); gi[j] = e; s += (double)e; }
        double lse = log(s), off = (double)smoothing / (double)c, total = 0.0, acc = 0.0;
        for (long long j = 0; j < c; ++j) {
            double wq = ((double)qi[j] * (1.0 - (double)smoothing) + off) * (double)w[j];
            total += wq;
            acc -= wq * ((double)xi[j] - m - lse);
        }
        loss[i] = (T)acc;
        for (long long j = 0; j < c; ++j) {
            double wq = ((double)qi[j] * (1.0 - (double)smoothing) + off) * (double)w[j];
            gi[j] = (T)((double)gi[j] / s * total - wq);
        }
    }
}

// elementwise over n values in rows of cols; npw = 0 (no pos_weight), 1 (one) or cols (per column)
template <typename T>
__device__ void sigmoid_xent_impl(const T* x, const T* t, const T* pw, T* loss, T* grad, long long n,
                                  long long cols, long long npw) {
    const T zero = T(0), one = T(1);
    GRID_LOOP(i, n) {
        T z = x[i], y = t[i];
        T e = m_exp(-m_abs(z));
        T sp_neg = m_log1p(e) + m_max(-z, zero);
        T sig = z >= zero ? one / (one + e) : e / (one + e);
        if (npw == 0) {
            loss[i] = (one - y) * z + sp_neg;
            grad[i] = sig - y;
        } else {
            T lw = one + ((npw == 1 ? pw[0] : pw[i % cols]) - one) * y;
            loss[i] = (one - y) * z + lw * sp_neg;
            grad[i] = (one - y) - lw * (one - sig);
        }
    }
}

template <typename T> __device__ void mse_impl(const T* p, const T* t, T* loss, T* grad, long long n) {
    GRID_LOOP(i, n) { T d = p[i] - t[i]; loss[i] = d * d; grad[i] = d * T(2); }
}

// u: uniform draws, turned in place into the scaled keep mask; y = x * mask
template <typename T> __device__ void dropout_impl(const T* x, T* u, T* y, long long n, T p, T scale) {
    GRID_LOOP(i, n) { T m = u[i] >= p ? scale : T(0); u[i] = m; y[i] = x[i] * m; }
}

// ----------------------------------------------------------------------------------------- batchnorm
// x of shape (N, C, S); a thread per channel for the statistics and sums, two passes, in double
template <typename T>
__device__ void bn_stats_impl(const T* x, double* mean, double* var, long long n, long long c, long long s) {
    GRID_LOOP(ch, c) {
        double acc = 0.0, count = (double)(n * s);
        for (long long b = 0; b < n; ++b)
            for (long long k = 0; k < s; ++k) acc += (double)x[(b * c + ch) * s + k];
        double mu = acc / count, sq = 0.0;
        for (long long b = 0; b < n; ++b)
            for (long long k = 0; k < s; ++k) { double d = (double)x[(b * c + ch) * s + k] - mu; sq += d * d; }
        mean[ch] = mu;
        var[ch] = sq / count;
    }
}

template <typename T>
__device__ void bn_apply_impl(const T* x, const T* mean, const T* inv_std, const T* gamma, const T* beta, T* xhat,
                              T* y, long long total, long long c, long long s) {
    GRID_LOOP(i, total) {
        long long ch = (i / s) % c;
        T h = (x[i] - mean[ch]) * inv_std[ch];
        xhat[i] = h;
        y[i] = h * gamma[ch] + beta[ch];
    }
}

template <typename T>
__device__ void bn_sums_impl(const T* g, const T* xhat, double* dbeta, double* dgamma, long long n, long long c,
                             long long s) {
    GRID_LOOP(ch, c) {
        double sb = 0.0, sg = 0.0;
        for (long long b = 0; b < n; ++b)
            for (long long k = 0; k < s; ++k) {
                long long i = (b * c + ch) * s + k;
                double v = (double)g[i];
                sb += v;
                sg += v * (double)xhat[i];
            }
        dbeta[ch] = sb;
        dgamma[ch] = sg;
    }
}

template <typename T>
__device__ void bn_dx_impl(const T* g, const T* xhat, const T* k, const T* dbeta, const T* dgamma, T* dx,
                           long long total, long long c, long long s, T count, int training) {
    GRID_LOOP(i, total) {
        long long ch = (i / s) % c;
        dx[i] = training ? k[ch] * (count * g[i] - dbeta[ch] - xhat[i] * dgamma[ch]) : g[i] * k[ch];
    }
}

// ----------------------------------------------------------------------------------------- optimizer steps
template <typename T>
__device__ void sgd_impl(T* p, const T* g, T* buf, long long n, T lr, T momentum, T damp1, int nesterov, T wd, T l1,
                         int first) {
    GRID_LOOP(i, n) {
        T pi = p[i], gi = g[i];
        if (wd != T(0)) gi = gi + wd * pi;
        if (l1 != T(0)) gi = gi + l1 * m_sign(pi);
        if (momentum != T(0)) {
            T b = first ? gi : buf[i] * momentum + damp1 * gi;
            buf[i] = b;
            gi = nesterov ? gi + momentum * b : b;
        }
        p[i] = pi - lr * gi;
    }
}

// decay: AdamW's 1 - lr * wd applied to p first; wd: the L2 penalty added to the gradient
template <typename T>
__device__ void adam_impl(T* p, const T* g, T* m, T* v, long long n, T b1, T b2, T eps, T step_size, T c2, T wd,
                          T decay, T l1) {
    GRID_LOOP(i, n) {
        T pi = p[i];
        if (decay != T(1)) pi = pi * decay;
        T gi = g[i];
        if (wd != T(0)) gi = gi + wd * pi;
        if (l1 != T(0)) gi = gi + l1 * m_sign(pi);
        T mi = m[i] * b1 + (T(1) - b1) * gi;
        T vi = v[i] * b2 + (T(1) - b2) * (gi * gi);
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - step_size * mi / (m_sqrt(vi) * c2 + eps);
    }
}

template <typename T>
__device__ void rmsprop_impl(T* p, const T* g, T* sq, T* buf, T* gavg, long long n, T lr, T alpha, T eps,
                             T momentum, int centered, T wd, T l1) {
    GRID_LOOP(i, n) {
        T pi = p[i], gi = g[i];
        if (wd != T(0)) gi = gi + wd * pi;
        if (l1 != T(0)) gi = gi + l1 * m_sign(pi);
        T s = sq[i] * alpha + (T(1) - alpha) * (gi * gi);
        sq[i] = s;
        T avg;
        if (centered) {
            T ga = gavg[i] * alpha + (T(1) - alpha) * gi;
            gavg[i] = ga;
            avg = m_sqrt(s - ga * ga) + eps;
        } else {
            avg = m_sqrt(s) + eps;
        }
        if (momentum != T(0)) {
            T b = buf[i] * momentum + gi / avg;
            buf[i] = b;
            p[i] = pi - lr * b;
        } else {
            p[i] = pi - lr * (gi / avg);
        }
    }
}

template <typename T>
__device__ void adagrad_impl(T* p, const T* g, T* sum, long long n, T clr, T eps, T wd, T l1) {
    GRID_LOOP(i, n) {
        T pi = p[i], gi = g[i];
        if (wd != T(0)) gi = gi + wd * pi;
        if (l1 != T(0)) gi = gi + l1 * m_sign(pi);
        T s = sum[i] + gi * gi;
        sum[i] = s;
        p[i] = pi - clr * gi / (m_sqrt(s) + eps);
    }
}

// sum of |g| (p = 1) or g^2 (p = 2) into out[0] (zeroed by the caller), in double: each block reduces its
// threads' sums in shared memory (blockDim.x a power of two, at most 256), then adds its total atomically
template <typename T> __device__ void norm_sum_impl(const T* g, double* out, long long n, int p) {
    __shared__ double part[256];
    double acc = 0.0;
    GRID_LOOP(i, n) {
        double v = (double)g[i];
        acc += p == 1 ? (v < 0.0 ? -v : v) : v * v;
    }
    part[threadIdx.x] = acc;
    __syncthreads();
    for (long long s = blockDim.x / 2; s > 0; s >>= 1) {
        if ((long long)threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) atomicAdd(out, part[0]);
}

// ----------------------------------------------------------------------------------------- convolution
// cols (c * kh * kw, n * ho * wo), a thread per entry; zeros where a window covers padding
template <typename T>
__device__ void im2col_impl(const T* x, T* cols, long long n, long long c, long long h, long long w, long long ho,
                            long long wo, long long kh, long long kw, long long sh, long long sw, long long ph,
                            long long pw) {
    long long per = n * ho * wo;
    GRID_LOOP(e, c * kh * kw * per) {
        long long r = e / per, q = e % per;
        long long b = q / (ho * wo), yo = (q / wo) % ho, xo = q % wo;
        long long ci = r / (kh * kw), i = (r / kw) % kh, j = r % kw;
        long long yy = yo * sh + i - ph, xx = xo * sw + j - pw;
        cols[e] = (yy < 0 || yy >= h || xx < 0 || xx >= w) ? T(0) : x[((b * c + ci) * h + yy) * w + xx];
    }
}

// dx (n, c, h, w), a thread per entry: the sum of the column gradients of every window over it
template <typename T>
__device__ void col2im_impl(const T* dcols, T* dx, long long n, long long c, long long h, long long w, long long ho,
                            long long wo, long long kh, long long kw, long long sh, long long sw, long long ph,
                            long long pw) {
    long long per = n * ho * wo;
    GRID_LOOP(e, n * c * h * w) {
        long long xx = e % w, yy = (e / w) % h, ci = (e / (h * w)) % c, b = e / (c * h * w);
        double acc = 0.0;
        for (long long i = 0; i < kh; ++i) {
            long long ty = yy + ph - i;
            if (ty < 0 || ty % sh != 0 || ty / sh >= ho) continue;
            for (long long j = 0; j < kw; ++j) {
                long long tx = xx + pw - j;
                if (tx < 0 || tx % sw != 0 || tx / sw >= wo) continue;
                long long r = (ci * kh + i) * kw + j;
                acc += (double)dcols[r * per + (b * ho + ty / sh) * wo + tx / sw];
            }
        }
        dx[e] = (T)acc;
    }
}

// y[b, o, k] = z[o, b, k] + bias[o]
template <typename T> __device__ void onp_to_nop_impl(const T* z, const T* bias, T* y, long long o, long long n,
                                                      long long p) {
    GRID_LOOP(e, o * n * p) {
        long long k = e % p, oc = (e / p) % o, b = e / (o * p);
        y[e] = z[(oc * n + b) * p + k] + bias[oc];
    }
}

// out[o, b, k] = g[b, o, k]
template <typename T> __device__ void nop_to_onp_impl(const T* g, T* out, long long n, long long o, long long p) {
    GRID_LOOP(e, o * n * p) {
        long long k = e % p, b = (e / p) % n, oc = e / (n * p);
        out[e] = g[(b * o + oc) * p + k];
    }
}

// ----------------------------------------------------------------------------------------- pooling
// a thread per output; padding reads as -inf (max) or 0 (mean) and is skipped; a NaN sticks, as in the reference
template <typename T>
__device__ void maxpool_impl(const T* x, T* y, signed char* am, long long n, long long c, long long h, long long w,
                             long long ho, long long wo, long long kh, long long kw, long long sh, long long sw,
                             long long ph, long long pw) {
    GRID_LOOP(e, n * c * ho * wo) {
        long long xo = e % wo, yo = (e / wo) % ho, bc = e / (ho * wo);
        long long y0 = yo * sh - ph, x0 = xo * sw - pw;
        T m = -m_inf<T>();
        int a = 0;
        for (long long i = 0; i < kh; ++i) {
            if (y0 + i < 0 || y0 + i >= h) continue;
            for (long long j = 0; j < kw; ++j) {
                if (x0 + j < 0 || x0 + j >= w) continue;
                T v = x[(bc * h + y0 + i) * w + x0 + j];
                bool gt = v > m;
                T m2 = gt ? v : m;
                m = v != v ? v : m2;
                if (gt) a = (int)(i * kw + j);
            }
        }
        y[e] = m;
        am[e] = (signed char)a;
    }
}

// dx (n, c, h, w), a thread per entry: the gradients of the windows whose argmax it is
template <typename T>
__device__ void maxpool_backward_impl(const T* grad, const signed char* am, T* dx, long long n, long long c,
                                      long long h, long long w, long long ho, long long wo, long long kh,
                                      long long kw, long long sh, long long sw, long long ph, long long pw) {
    GRID_LOOP(e, n * c * h * w) {
        long long xx = e % w, yy = (e / w) % h, bc = e / (h * w);
        double acc = 0.0;
        for (long long i = 0; i < kh; ++i) {
            long long ty = yy + ph - i;
            if (ty < 0 || ty % sh != 0 || ty / sh >= ho) continue;
            for (long long j = 0; j < kw; ++j) {
                long long tx = xx + pw - j;
                if (tx < 0 || tx % sw != 0 || tx / sw >= wo) continue;
                long long q = (bc * ho + ty / sh) * wo + tx / sw;
                if ((long long)am[q] == i * kw + j) acc += (double)grad[q];
            }
        }
        dx[e] = (T)acc;
    }
}

template <typename T>
__device__ void avgpool_impl(const T* x, T* y, long long n, long long c, long long h, long long w, long long ho,
                             long long wo, long long kh, long long kw, long long sh, long long sw, long long ph,
                             long long pw) {
    GRID_LOOP(e, n * c * ho * wo) {
        long long xo = e % wo, yo = (e / wo) % ho, bc = e / (ho * wo);
        long long y0 = yo * sh - ph, x0 = xo * sw - pw;
        T s = T(0);
        for (long long i = 0; i < kh; ++i) {
            if (y0 + i < 0 || y0 + i >= h) continue;
            for (long long j = 0; j < kw; ++j) {
                if (x0 + j < 0 || x0 + j >= w) continue;
                s += x[(bc * h + y0 + i) * w + x0 + j];
            }
        }
        y[e] = s / T(kh * kw);
    }
}

template <typename T>
__device__ void avgpool_backward_impl(const T* grad, T* dx, long long n, long long c, long long h, long long w,
                                      long long ho, long long wo, long long kh, long long kw, long long sh,
                                      long long sw, long long ph, long long pw) {
    GRID_LOOP(e, n * c * h * w) {
        long long xx = e % w, yy = (e / w) % h, bc = e / (h * w);
        T acc = T(0);
        for (long long i = 0; i < kh; ++i) {
            long long ty = yy + ph - i;
            if (ty < 0 || ty % sh != 0 || ty / sh >= ho) continue;
            for (long long j = 0; j < kw; ++j) {
                long long tx = xx + pw - j;
                if (tx < 0 || tx % sw != 0 || tx / sw >= wo) continue;
                acc += grad[(bc * ho + ty / sh) * wo + tx / sw] / T(kh * kw);
            }
        }
        dx[e] = acc;
    }
}

// ----------------------------------------------------------------------------------------- recurrent steps
// a thread per (b, j): gates (n, 4 hs: i, f, g, o) become their activations in place
template <typename T> __device__ void lstm_step_impl(T* gates, const T* c_prev, T* h, T* c, long long n,
                                                     long long hs) {
    const T one = T(1);
    GRID_LOOP(e, n * hs) {
        long long b = e / hs, j = e % hs, r = b * 4 * hs;
        T i = one / (one + m_exp(-gates[r + j]));
        T f = one / (one + m_exp(-gates[r + hs + j]));
        T g = m_tanh(gates[r + 2 * hs + j]);
        T o = one / (one + m_exp(-gates[r + 3 * hs + j]));
        T cc = f * c_prev[e] + i * g;
        gates[r + j] = i; gates[r + hs + j] = f; gates[r + 2 * hs + j] = g; gates[r + 3 * hs + j] = o;
        c[e] = cc;
        h[e] = o * m_tanh(cc);
    }
}

// d may be acts: each thread reads its four activations before writing its four gradients
template <typename T>
__device__ void lstm_step_backward_impl(const T* grad_h, const T* grad_c, const T* acts, const T* c_prev,
                                        const T* c, T* d, T* grad_c_prev, long long n, long long hs,
                                        int with_grad_c) {
    const T one = T(1);
    GRID_LOOP(e, n * hs) {
        long long b = e / hs, j = e % hs, r = b * 4 * hs;
        T i = acts[r + j], f = acts[r + hs + j], g = acts[r + 2 * hs + j], o = acts[r + 3 * hs + j];
        T tc = m_tanh(c[e]);
        T dc = (one - tc * tc) * o * grad_h[e];
        if (with_grad_c) dc = dc + grad_c[e];
        grad_c_prev[e] = dc * f;
        d[r + j] = (one - i) * g * (dc * i);
        d[r + hs + j] = (one - f) * f * dc * c_prev[e];
        d[r + 2 * hs + j] = (one - g * g) * (dc * i);
        d[r + 3 * hs + j] = (one - o) * (tc * grad_h[e] * o);
    }
}

// acts (n, 3 hs: r, z, n) holds gi and becomes the activations in place; h = (h_prev - n) z + n
template <typename T> __device__ void gru_step_impl(T* acts, const T* gh, const T* h_prev, T* h, long long n,
                                                    long long hs) {
    const T one = T(1);
    GRID_LOOP(e, n * hs) {
        long long b = e / hs, j = e % hs, r0 = b * 3 * hs;
        T r = one / (one + m_exp(-(acts[r0 + j] + gh[r0 + j])));
        T z = one / (one + m_exp(-(acts[r0 + hs + j] + gh[r0 + hs + j])));
        T nn = m_tanh(acts[r0 + 2 * hs + j] + r * gh[r0 + 2 * hs + j]);
        acts[r0 + j] = r; acts[r0 + hs + j] = z; acts[r0 + 2 * hs + j] = nn;
        h[e] = (h_prev[e] - nn) * z + nn;
    }
}

// d may be acts and dgh may be gh: each thread reads its values before writing its own entries
template <typename T>
__device__ void gru_step_backward_impl(const T* grad_h, const T* acts, const T* gh, const T* h_prev, T* d, T* dgh,
                                       T* ghp, long long n, long long hs) {
    const T one = T(1);
    GRID_LOOP(e, n * hs) {
        long long b = e / hs, j = e % hs, r0 = b * 3 * hs;
        T r = acts[r0 + j], z = acts[r0 + hs + j], nn = acts[r0 + 2 * hs + j];
        T g = grad_h[e], ghn = gh[r0 + 2 * hs + j];
        T gz = g * z, t1 = g - gz, t2 = (h_prev[e] - nn) * g * z;
        T dz = (one - z) * t2, dn = (one - nn * nn) * t1, dr = (one - r) * r * (dn * ghn);
        ghp[e] = gz;
        d[r0 + j] = dr; d[r0 + hs + j] = dz; d[r0 + 2 * hs + j] = dn;
        dgh[r0 + j] = dr; dgh[r0 + hs + j] = dz; dgh[r0 + 2 * hs + j] = dn * r;
    }
}

// ----------------------------------------------------------------------------------------- instantiation
#define L long long
#define INSTANTIATE(T, S) \
extern "C" __global__ void act_##S(const T* z, T* y, L n, int code, T a) { act_impl<T>(z, y, n, code, a); } \
extern "C" __global__ void bias_act_##S(T* z, const T* b, L n, L cols, int code, T a) { \
    bias_act_impl<T>(z, b, n, cols, code, a); } \
extern "C" __global__ void act_backward_##S(const T* g, const T* s, T* out, L n, int code, T a) { \
    act_backward_impl<T>(g, s, out, n, code, a); } \
extern "C" __global__ void bias_act_backward_##S(const T* g, const T* s, T* out, T* db, L rows, L cols, int code, \
                                                 T a) { \
    bias_act_backward_impl<T>(g, s, out, db, rows, cols, code, a); } \
extern "C" __global__ void softmax_xent_index_##S(const T* x, const L* t, const T* w, T* loss, T* grad, L n, L c, \
                                                  T sm, L* bad) { \
    softmax_xent_index_impl<T>(x, t, w, loss, grad, n, c, sm, bad); } \
extern "C" __global__ void softmax_xent_prob_##S(const T* x, const T* q, const T* w, T* loss, T* grad, L n, L c, \
                                                 T sm) { softmax_xent_prob_impl<T>(x, q, w, loss, grad, n, c, sm); } \
extern "C" __global__ void sigmoid_xent_##S(const T* x, const T* t, const T* pw, T* loss, T* grad, L n, L cols, \
                                            L npw) { sigmoid_xent_impl<T>(x, t, pw, loss, grad, n, cols, npw); } \
extern "C" __global__ void mse_##S(const T* p, const T* t, T* loss, T* grad, L n) { \
    mse_impl<T>(p, t, loss, grad, n); } \
extern "C" __global__ void dropout_##S(const T* x, T* u, T* y, L n, T p, T scale) { \
    dropout_impl<T>(x, u, y, n, p, scale); } \
extern "C" __global__ void bn_stats_##S(const T* x, double* mean, double* var, L n, L c, L s) { \
    bn_stats_impl<T>(x, mean, var, n, c, s); } \
extern "C" __global__ void bn_apply_##S(const T* x, const T* mean, const T* k, const T* gamma, const T* beta, \
                                        T* xhat, T* y, L total, L c, L s) { \
    bn_apply_impl<T>(x, mean, k, gamma, beta, xhat, y, total, c, s); } \
extern "C" __global__ void bn_sums_##S(const T* g, const T* xhat, double* db, double* dg, L n, L c, L s) { \
    bn_sums_impl<T>(g, xhat, db, dg, n, c, s); } \
extern "C" __global__ void bn_dx_##S(const T* g, const T* xhat, const T* k, const T* db, const T* dg, T* dx, \
                                     L total, L c, L s, T count, int training) { \
    bn_dx_impl<T>(g, xhat, k, db, dg, dx, total, c, s, count, training); } \
extern "C" __global__ void sgd_##S(T* p, const T* g, T* buf, L n, T lr, T mom, T damp1, int nesterov, T wd, T l1, \
                                   int first) { sgd_impl<T>(p, g, buf, n, lr, mom, damp1, nesterov, wd, l1, first); } \
extern "C" __global__ void adam_##S(T* p, const T* g, T* m, T* v, L n, T b1, T b2, T eps, T ss, T c2, T wd, \
                                    T decay, T l1) { \
    adam_impl<T>(p, g, m, v, n, b1, b2, eps, ss, c2, wd, decay, l1); } \
extern "C" __global__ void rmsprop_##S(T* p, const T* g, T* sq, T* buf, T* gavg, L n, T lr, T alpha, T eps, T mom, \
                                       int centered, T wd, T l1) { \
    rmsprop_impl<T>(p, g, sq, buf, gavg, n, lr, alpha, eps, mom, centered, wd, l1); } \
extern "C" __global__ void adagrad_##S(T* p, const T* g, T* sum, L n, T clr, T eps, T wd, T l1) { \
    adagrad_impl<T>(p, g, sum, n, clr, eps, wd, l1); } \
extern "C" __global__ void norm_sum_##S(const T* g, double* out, L n, int p) { norm_sum_impl<T>(g, out, n, p); } \
extern "C" __global__ void im2col_##S(const T* x, T* cols, L n, L c, L h, L w, L ho, L wo, L kh, L kw, L sh, L sw, \
                                      L ph, L pw) { \
    im2col_impl<T>(x, cols, n, c, h, w, ho, wo, kh, kw, sh, sw, ph, pw); } \
extern "C" __global__ void col2im_##S(const T* dcols, T* dx, L n, L c, L h, L w, L ho, L wo, L kh, L kw, L sh, \
                                      L sw, L ph, L pw) { \
    col2im_impl<T>(dcols, dx, n, c, h, w, ho, wo, kh, kw, sh, sw, ph, pw); } \
extern "C" __global__ void onp_to_nop_##S(const T* z, const T* bias, T* y, L o, L n, L p) { \
    onp_to_nop_impl<T>(z, bias, y, o, n, p); } \
extern "C" __global__ void nop_to_onp_##S(const T* g, T* out, L n, L o, L p) { nop_to_onp_impl<T>(g, out, n, o, p); } \
extern "C" __global__ void maxpool_##S(const T* x, T* y, signed char* am, L n, L c, L h, L w, L ho, L wo, L kh, \
                                       L kw, L sh, L sw, L ph, L pw) { \
    maxpool_impl<T>(x, y, am, n, c, h, w, ho, wo, kh, kw, sh, sw, ph, pw); } \
extern "C" __global__ void maxpool_backward_##S(const T* grad, const signed char* am, T* dx, L n, L c, L h, L w, \
                                                L ho, L wo, L kh, L kw, L sh, L sw, L ph, L pw) { \
    maxpool_backward_impl<T>(grad, am, dx, n, c, h, w, ho, wo, kh, kw, sh, sw, ph, pw); } \
extern "C" __global__ void avgpool_##S(const T* x, T* y, L n, L c, L h, L w, L ho, L wo, L kh, L kw, L sh, L sw, \
                                       L ph, L pw) { \
    avgpool_impl<T>(x, y, n, c, h, w, ho, wo, kh, kw, sh, sw, ph, pw); } \
extern "C" __global__ void avgpool_backward_##S(const T* grad, T* dx, L n, L c, L h, L w, L ho, L wo, L kh, L kw, \
                                                L sh, L sw, L ph, L pw) { \
    avgpool_backward_impl<T>(grad, dx, n, c, h, w, ho, wo, kh, kw, sh, sw, ph, pw); } \
extern "C" __global__ void lstm_step_##S(T* gates, const T* c_prev, T* h, T* c, L n, L hs) { \
    lstm_step_impl<T>(gates, c_prev, h, c, n, hs); } \
extern "C" __global__ void lstm_step_backward_##S(const T* gh, const T* gc, const T* acts, const T* cp, const T* c, \
                                                  T* d, T* gcp, L n, L hs, int with_gc) { \
    lstm_step_backward_impl<T>(gh, gc, acts, cp, c, d, gcp, n, hs, with_gc); } \
extern "C" __global__ void gru_step_##S(T* acts, const T* gh, const T* hp, T* h, L n, L hs) { \
    gru_step_impl<T>(acts, gh, hp, h, n, hs); } \
extern "C" __global__ void gru_step_backward_##S(const T* g, const T* acts, const T* gh, const T* hp, T* d, T* dgh, \
                                                 T* ghp, L n, L hs) { \
    gru_step_backward_impl<T>(g, acts, gh, hp, d, dgh, ghp, n, hs); }

INSTANTIATE(float, f32)
INSTANTIATE(double, f64)
