// One decode step of a Llama-family decoder (int4 weights, bf16 activations) for every row at once,
// in one call: the fast path's eager step dispatched about 25 small torch ops per layer from Python,
// which cost as much as the int4 matmuls themselves. Here the matmuls are torch's int4 kernel and
// everything between them (RMS norm, rotary embedding, KV-cache writes, attention for one query a
// row, SiLU gate, residual adds) is a plain loop, computed in fp32 and stored in bf16.
// Built on first use by convo.engine.native (torch.utils.cpp_extension); the Python step stays the
// reference and the fallback.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <vector>

using at::BFloat16;

namespace {

constexpr int64_t kGroup = 32;

inline float f(BFloat16 v) { return static_cast<float>(v); }

// out[b] = bf16(bf16(x[b] / rms(x[b])) * weight): transformers' order (normalized in fp32, cast, then scaled)
void rms_norm(const BFloat16* x, const BFloat16* weight, BFloat16* out, int64_t rows, int64_t hidden, float eps) {
  for (int64_t b = 0; b < rows; ++b) {
    const BFloat16* xr = x + b * hidden;
    float sum = 0.f;
    for (int64_t i = 0; i < hidden; ++i) sum += f(xr[i]) * f(xr[i]);
    const float scale = 1.f / std::sqrt(sum / hidden + eps);
    for (int64_t i = 0; i < hidden; ++i) {
      const float normed = f(BFloat16(f(xr[i]) * scale));
      out[b * hidden + i] = BFloat16(normed * f(weight[i]));
    }
  }
}

// rotate-half rotary embedding of one head vector (d values) at one position
inline void rope(const BFloat16* in, const BFloat16* cos, const BFloat16* sin, float* out, int64_t d) {
  const int64_t half = d / 2;
  for (int64_t i = 0; i < d; ++i) {
    const float rotated = i < half ? -f(in[i + half]) : f(in[i - half]);
    out[i] = f(BFloat16(f(in[i]) * f(cos[i]))) + f(BFloat16(rotated * f(sin[i])));
  }
}

}  // namespace

// x: [B, hidden] bf16, the embedded tokens; positions: [B] int64, each row's cache length before
// this token (its slot is its row). k_cache, v_cache: [layers, slots, kv_heads, max_len, head_dim] bf16.
// cos, sin: [max_len, head_dim] bf16. Per layer (lists of equal length): the first norm's weight,
// the fused q/k/v int4 weight, its scales and zeros, its bias (or an empty tensor), the output
// projection, the second norm, the fused gate/up projection and the down projection.
// Returns the hidden states after the last layer, [B, hidden] bf16 (the caller applies the final norm
// and the head).
at::Tensor decode_layers(at::Tensor x, at::Tensor positions, at::Tensor k_cache, at::Tensor v_cache,
                         at::Tensor cos, at::Tensor sin, std::vector<at::Tensor> norm1,
                         std::vector<at::Tensor> qkv_w, std::vector<at::Tensor> qkv_s, std::vector<at::Tensor> qkv_b,
                         std::vector<at::Tensor> o_w, std::vector<at::Tensor> o_s, std::vector<at::Tensor> norm2,
                         std::vector<at::Tensor> gu_w, std::vector<at::Tensor> gu_s, std::vector<at::Tensor> d_w,
                         std::vector<at::Tensor> d_s, int64_t n_heads, int64_t n_kv, int64_t head_dim, double eps) {
  // only ATen from here on: other Python threads (the app's request handlers) run during the step
  pybind11::gil_scoped_release no_gil;
  TORCH_CHECK(x.scalar_type() == at::kBFloat16 && x.dim() == 2 && x.is_contiguous(), "x: contiguous [B, hidden] bf16");
  TORCH_CHECK(k_cache.is_contiguous() && v_cache.is_contiguous(), "the KV cache must be contiguous");
  const int64_t rows = x.size(0), hidden = x.size(1), layers = static_cast<int64_t>(norm1.size());
  const int64_t nq = n_heads * head_dim, nk = n_kv * head_dim, per_kv = n_heads / n_kv;
  const int64_t max_len = k_cache.size(3), slots = k_cache.size(1);
  TORCH_CHECK(rows <= slots, "more rows than cache slots");
  const int64_t* pos = positions.data_ptr<int64_t>();
  for (int64_t b = 0; b < rows; ++b) TORCH_CHECK(pos[b] >= 0 && pos[b] < max_len, "position out of the cache");
  const float softmax_scale = 1.f / std::sqrt(static_cast<float>(head_dim));
  const float epsilon = static_cast<float>(eps);

  x = x.clone();
  auto normed = at::empty_like(x);
  auto attn = at::empty({rows, nq}, x.options());
  BFloat16* xp = x.data_ptr<BFloat16>();
  BFloat16* np = normed.data_ptr<BFloat16>();
  const BFloat16* cosp = cos.data_ptr<BFloat16>();
  const BFloat16* sinp = sin.data_ptr<BFloat16>();
  const int64_t layer_stride = slots * n_kv * max_len * head_dim;

  for (int64_t l = 0; l < layers; ++l) {
    rms_norm(xp, norm1[l].data_ptr<BFloat16>(), np, rows, hidden, epsilon);
    auto qkv = at::_weight_int4pack_mm_for_cpu(normed, qkv_w[l], kGroup, qkv_s[l]);
    if (qkv_b[l].numel()) qkv.add_(qkv_b[l]);
    qkv = qkv.contiguous();
    const BFloat16* qkvp = qkv.data_ptr<BFloat16>();
    BFloat16* kc = k_cache.data_ptr<BFloat16>() + l * layer_stride;
    BFloat16* vc = v_cache.data_ptr<BFloat16>() + l * layer_stride;
    // keys and values of the new token into each row's slot (rotated keys, as the eager step stores them)
    for (int64_t b = 0; b < rows; ++b) {
      const BFloat16* row = qkvp + b * (nq + 2 * nk);
      std::vector<float> rotated(head_dim);
      for (int64_t h = 0; h < n_kv; ++h) {
        const int64_t at_pos = ((b * n_kv + h) * max_len + pos[b]) * head_dim;
        rope(row + nq + h * head_dim, cosp + pos[b] * head_dim, sinp + pos[b] * head_dim, rotated.data(), head_dim);
        for (int64_t i = 0; i < head_dim; ++i) {
          kc[at_pos + i] = BFloat16(rotated[i]);
          vc[at_pos + i] = row[nq + nk + h * head_dim + i];
        }
      }
    }
    // attention of each row's one query over its own cache, per query head (fp32 throughout)
    BFloat16* ap = attn.data_ptr<BFloat16>();
    at::parallel_for(0, rows * n_heads, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> q(head_dim), out(head_dim), scores;
      for (int64_t job = begin; job < end; ++job) {
        const int64_t b = job / n_heads, h = job % n_heads, kvh = h / per_kv, span = pos[b] + 1;
        const BFloat16* row = qkvp + b * (nq + 2 * nk);
        rope(row + h * head_dim, cosp + pos[b] * head_dim, sinp + pos[b] * head_dim, q.data(), head_dim);
        for (int64_t i = 0; i < head_dim; ++i) q[i] = f(BFloat16(q[i]));  // the eager step's bf16 query
        const BFloat16* keys = kc + (b * n_kv + kvh) * max_len * head_dim;
        const BFloat16* values = vc + (b * n_kv + kvh) * max_len * head_dim;
        scores.resize(span);
        float top = -INFINITY;
        for (int64_t t = 0; t < span; ++t) {
          float dot = 0.f;
          const BFloat16* k = keys + t * head_dim;
          for (int64_t i = 0; i < head_dim; ++i) dot += q[i] * f(k[i]);
          scores[t] = dot * softmax_scale;
          top = std::max(top, scores[t]);
        }
        float total = 0.f;
        for (int64_t t = 0; t < span; ++t) total += (scores[t] = std::exp(scores[t] - top));
        std::fill(out.begin(), out.end(), 0.f);
        for (int64_t t = 0; t < span; ++t) {
          const float p = scores[t] / total;
          const BFloat16* v = values + t * head_dim;
          for (int64_t i = 0; i < head_dim; ++i) out[i] += p * f(v[i]);
        }
        for (int64_t i = 0; i < head_dim; ++i) ap[b * nq + h * head_dim + i] = BFloat16(out[i]);
      }
    });
    auto o = at::_weight_int4pack_mm_for_cpu(attn, o_w[l], kGroup, o_s[l]).contiguous();
    const BFloat16* op = o.data_ptr<BFloat16>();
    for (int64_t i = 0; i < rows * hidden; ++i) xp[i] = BFloat16(f(xp[i]) + f(op[i]));
    rms_norm(xp, norm2[l].data_ptr<BFloat16>(), np, rows, hidden, epsilon);
    auto gu = at::_weight_int4pack_mm_for_cpu(normed, gu_w[l], kGroup, gu_s[l]).contiguous();
    const int64_t inner = gu.size(1) / 2;
    auto act = at::empty({rows, inner}, x.options());
    const BFloat16* gup = gu.data_ptr<BFloat16>();
    BFloat16* actp = act.data_ptr<BFloat16>();
    for (int64_t b = 0; b < rows; ++b) {
      for (int64_t i = 0; i < inner; ++i) {
        const float g = f(gup[b * 2 * inner + i]), u = f(gup[b * 2 * inner + inner + i]);
        actp[b * inner + i] = BFloat16(f(BFloat16(g / (1.f + std::exp(-g)))) * u);
      }
    }
    auto down = at::_weight_int4pack_mm_for_cpu(act, d_w[l], kGroup, d_s[l]).contiguous();
    const BFloat16* dp = down.data_ptr<BFloat16>();
    for (int64_t i = 0; i < rows * hidden; ++i) xp[i] = BFloat16(f(xp[i]) + f(dp[i]));
  }
  return x;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("decode_layers", &decode_layers, "one decode step through every layer (int4 weights, bf16 activations)");
}
