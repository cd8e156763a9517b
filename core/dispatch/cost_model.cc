#include "core/dispatch/cost_model.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <vector>

namespace engram::dispatch {
namespace {

constexpr int kParams = 3;  // fixed, per byte, per unit
constexpr double kMinSeconds = 1e-9;

// Solves the normal equations of the parameters in `subset` (a bit mask)
// by Gaussian elimination with partial pivoting; false when they are
// singular. `ata` and `atb` hold the full 3x3 system.
bool Solve(const std::array<std::array<double, kParams>, kParams>& ata,
           const std::array<double, kParams>& atb, unsigned subset,
           std::array<double, kParams>* theta) {
  int index[kParams];
  int n = 0;
  for (int p = 0; p < kParams; ++p) {
    if (subset & (1u << p)) index[n++] = p;
  }
  double m[kParams][kParams + 1];
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) m[i][j] = ata[index[i]][index[j]];
    m[i][n] = atb[index[i]];
  }
  for (int col = 0; col < n; ++col) {
    int pivot = col;
    for (int r = col + 1; r < n; ++r) {
      if (std::abs(m[r][col]) > std::abs(m[pivot][col])) pivot = r;
    }
    // Relative to the column's own scale: the columns are normalised, so a
    // pivot this small means the parameter is not determined by the data.
    if (std::abs(m[pivot][col]) < 1e-10) return false;
    for (int j = 0; j <= n; ++j) std::swap(m[col][j], m[pivot][j]);
    for (int r = 0; r < n; ++r) {
      if (r == col) continue;
      const double f = m[r][col] / m[col][col];
      for (int j = col; j <= n; ++j) m[r][j] -= f * m[col][j];
    }
  }
  theta->fill(0.0);
  for (int i = 0; i < n; ++i) (*theta)[index[i]] = m[i][n] / m[i][i];
  return true;
}

}  // namespace

CostFit FitCost(absl::Span<const CostObservation> observations,
                uint32_t min_samples) {
  CostFit fit;
  fit.samples = static_cast<uint32_t>(observations.size());
  if (observations.empty()) return fit;
  // Each observation's row [1, bytes, work] / seconds should meet the
  // parameters at 1; the columns are scaled to a largest entry of 1 so that
  // bytes and work in the billions do not swamp the fixed cost.
  std::array<double, kParams> scale = {0.0, 0.0, 0.0};
  fit.min_work = std::numeric_limits<uint64_t>::max();
  for (const CostObservation& o : observations) {
    const double s = std::max(o.seconds, kMinSeconds);
    scale[0] = std::max(scale[0], 1.0 / s);
    scale[1] = std::max(scale[1], static_cast<double>(o.bytes) / s);
    scale[2] = std::max(scale[2], static_cast<double>(o.work) / s);
    fit.min_work = std::min(fit.min_work, o.work);
    fit.max_work = std::max(fit.max_work, o.work);
    fit.newest = std::max(fit.newest, o.at);
  }
  std::array<std::array<double, kParams>, kParams> ata = {};
  std::array<double, kParams> atb = {};
  auto row = [&](const CostObservation& o) {
    const double s = std::max(o.seconds, kMinSeconds);
    std::array<double, kParams> x = {1.0 / s, static_cast<double>(o.bytes) / s,
                                     static_cast<double>(o.work) / s};
    for (int p = 0; p < kParams; ++p) {
      x[p] = scale[p] > 0.0 ? x[p] / scale[p] : 0.0;
    }
    return x;
  };
  std::vector<std::array<double, kParams>> rows;
  rows.reserve(observations.size());
  for (const CostObservation& o : observations) {
    const std::array<double, kParams> x = row(o);
    rows.push_back(x);
    for (int i = 0; i < kParams; ++i) {
      atb[i] += x[i];
      for (int j = 0; j < kParams; ++j) ata[i][j] += x[i] * x[j];
    }
  }
  // Non-negative least squares by enumeration: with three parameters, the
  // best of the seven subsets whose free solution is non-negative is the
  // constrained optimum.
  double best_sse = std::numeric_limits<double>::infinity();
  std::array<double, kParams> best = {0.0, 0.0, 0.0};
  for (unsigned subset = 1; subset < (1u << kParams); ++subset) {
    std::array<double, kParams> theta;
    if (!Solve(ata, atb, subset, &theta)) continue;
    if (theta[0] < 0.0 || theta[1] < 0.0 || theta[2] < 0.0) continue;
    double sse = 0.0;
    for (const std::array<double, kParams>& x : rows) {
      const double r = x[0] * theta[0] + x[1] * theta[1] + x[2] * theta[2] - 1;
      sse += r * r;
    }
    // A smaller subset must do clearly better to lose to a larger one, so
    // that a parameter the data cannot tell apart stays at zero.
    if (sse < best_sse * (1.0 - 1e-9)) {
      best_sse = sse;
      best = theta;
    }
  }
  if (!std::isfinite(best_sse)) return fit;
  fit.fixed_seconds = scale[0] > 0.0 ? best[0] / scale[0] : 0.0;
  fit.seconds_per_byte = scale[1] > 0.0 ? best[1] / scale[1] : 0.0;
  fit.seconds_per_unit = scale[2] > 0.0 ? best[2] / scale[2] : 0.0;
  fit.relative_error =
      std::sqrt(best_sse / static_cast<double>(observations.size()));
  fit.usable = fit.samples >= min_samples &&
               fit.max_work >= 2 * std::max<uint64_t>(fit.min_work, 1);
  return fit;
}

}  // namespace engram::dispatch
