#include "server/proto_conversion.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "core/resident_search.h"
#include "core/validation.h"

namespace engram::server {

dispatch::Placement PlacementFromProto(pb::Placement placement) {
  switch (placement) {
    case pb::PLACEMENT_CPU_ONLY:
      return dispatch::Placement::kCpuOnly;
    case pb::PLACEMENT_GPU_ONLY:
      return dispatch::Placement::kGpuOnly;
    default:
      return dispatch::Placement::kAuto;
  }
}

pb::Backend BackendToProto(dispatch::BackendKind backend) {
  switch (backend) {
    case dispatch::BackendKind::kCpu:
      return pb::BACKEND_CPU;
    case dispatch::BackendKind::kGpu:
      return pb::BACKEND_GPU;
    case dispatch::BackendKind::kMixed:
      return pb::BACKEND_MIXED;
    case dispatch::BackendKind::kUnspecified:
      break;
  }
  return pb::BACKEND_UNSPECIFIED;
}

absl::StatusOr<dispatch::CosineJob> CosineJobFromProto(
    const pb::BatchCosineRequest& request) {
  const pb::Matrix& q = request.queries();
  const pb::Matrix& t = request.targets();
  ENGRAM_RETURN_IF_ERROR(core::ValidateMatrixShape("queries", q.rows(),
                                                   q.cols(), q.values_size()));
  ENGRAM_RETURN_IF_ERROR(core::ValidateMatrixShape("targets", t.rows(),
                                                   t.cols(), t.values_size()));
  if (request.placement() != pb::PLACEMENT_AUTO &&
      request.placement() != pb::PLACEMENT_CPU_ONLY &&
      request.placement() != pb::PLACEMENT_GPU_ONLY) {
    return absl::InvalidArgumentError("placement has an unknown value");
  }
  dispatch::CosineJob job;
  job.queries = kernels::MatrixView{q.values().data(), q.rows(), q.cols()};
  job.targets = kernels::MatrixView{t.values().data(), t.rows(), t.cols()};
  job.top_k = request.top_k();
  if (request.has_min_score()) job.min_score = request.min_score();
  job.placement = PlacementFromProto(request.placement());
  return job;
}

absl::StatusOr<dispatch::SpreadJob> SpreadJobFromProto(
    const pb::SpreadRequest& request,
    std::vector<kernels::SpreadSeed>* seed_storage) {
  if (request.placement() != pb::PLACEMENT_AUTO &&
      request.placement() != pb::PLACEMENT_CPU_ONLY &&
      request.placement() != pb::PLACEMENT_GPU_ONLY) {
    return absl::InvalidArgumentError("placement has an unknown value");
  }
  const pb::Graph& g = request.graph();
  dispatch::SpreadJob job;
  job.graph.num_nodes = g.num_nodes();
  job.graph.row_offsets =
      absl::MakeConstSpan(g.row_offsets().data(), g.row_offsets_size());
  job.graph.targets = absl::MakeConstSpan(g.targets().data(), g.targets_size());
  job.graph.weights = absl::MakeConstSpan(g.weights().data(), g.weights_size());

  seed_storage->clear();
  seed_storage->reserve(request.seeds_size());
  for (const pb::Seed& seed : request.seeds()) {
    seed_storage->push_back({seed.node(), seed.activation()});
  }
  job.seeds = *seed_storage;

  const pb::SpreadParams& p = request.params();
  kernels::SpreadParams& params = job.params;
  if (p.has_max_hops()) params.max_hops = p.max_hops();
  switch (p.decay_case()) {
    case pb::SpreadParams::kExponentialRate:
      params.decay = kernels::DecayKind::kExponential;
      params.decay_param = p.exponential_rate();
      break;
    case pb::SpreadParams::kPowerLawExponent:
      params.decay = kernels::DecayKind::kPowerLaw;
      params.decay_param = p.power_law_exponent();
      break;
    case pb::SpreadParams::kLinearSlope:
      params.decay = kernels::DecayKind::kLinear;
      params.decay_param = p.linear_slope();
      break;
    case pb::SpreadParams::kConstantFactor:
      params.decay = kernels::DecayKind::kConstant;
      params.decay_param = p.constant_factor();
      break;
    case pb::SpreadParams::DECAY_NOT_SET:
      break;  // the in-class default: exponential 0.7
  }
  if (p.has_threshold()) params.threshold = p.threshold();
  params.hop_thresholds.assign(p.hop_thresholds().begin(),
                               p.hop_thresholds().end());
  if (p.has_max_activation()) params.max_activation = p.max_activation();
  job.top_k = request.top_k();
  job.placement = PlacementFromProto(request.placement());
  job.seed_nodes = absl::MakeConstSpan(request.seed_nodes().nodes().data(),
                                       request.seed_nodes().nodes_size());
  job.result_nodes = absl::MakeConstSpan(request.result_nodes().nodes().data(),
                                         request.result_nodes().nodes_size());
  return job;
}

namespace {

// a * b, saturating instead of wrapping.
uint64_t SaturatingProduct(uint64_t a, uint64_t b) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) {
    return std::numeric_limits<uint64_t>::max();
  }
  return a * b;
}

}  // namespace

uint64_t AdmissionCost(const pb::BatchCosineRequest& request,
                       const core::RequestLimits& limits) {
  const uint64_t input =
      static_cast<uint64_t>(request.queries().values_size()) +
      request.targets().values_size();
  const uint64_t q = request.queries().rows();
  const uint64_t n = request.targets().rows();
  // A top-k entry is an index and a score.
  const uint64_t outputs =
      request.top_k() == 0
          ? SaturatingProduct(q, n)
          : SaturatingProduct(
                SaturatingProduct(q, std::min<uint64_t>(request.top_k(), n)),
                2);
  return sizeof(float) *
         (input + std::min(outputs, limits.max_output_elements));
}

uint64_t AdmissionCost(const pb::SpreadRequest& request,
                       const core::RequestLimits& limits) {
  const pb::Graph& graph = request.graph();
  const uint64_t input =
      sizeof(uint32_t) * (static_cast<uint64_t>(graph.row_offsets_size()) +
                          graph.targets_size()) +
      sizeof(float) * graph.weights_size() +
      sizeof(kernels::SpreadSeed) * request.seeds_size();
  // Per node: the response's float and the kernel's double activation,
  // frontier entry and scratch, about 24 bytes in all.
  const uint64_t nodes =
      std::min<uint64_t>(graph.num_nodes(), limits.max_nodes);
  return input + 24 * nodes;
}

uint64_t AdmissionCost(const pb::SearchCollectionRequest& request,
                       uint64_t collection_rows,
                       const core::RequestLimits& limits) {
  const uint64_t outputs =
      core::SearchOutputs(request.queries().rows(), request.top_k(),
                          collection_rows) *
      (request.top_k() == 0 ? 1 : 4);
  return sizeof(float) *
         (static_cast<uint64_t>(request.queries().values_size()) +
          std::min(outputs, limits.max_output_elements));
}

collections::Metadata MetadataFromProto(
    const google::protobuf::Map<std::string, std::string>& map) {
  return collections::Metadata(map.begin(), map.end());
}

void CollectionInfoToProto(const collections::CollectionInfo& info,
                           const std::string& residency,
                           pb::CollectionInfo* out) {
  out->set_name(info.name);
  out->set_dimension(info.dimension);
  out->set_count(info.rows);
  out->set_bytes(info.bytes);
  out->mutable_metadata()->insert(info.metadata.begin(), info.metadata.end());
  out->set_residency(residency);
  out->set_load_state(info.load_state);
  out->set_version(info.version);
  out->set_segments(info.segments);
  out->set_has_ids(info.has_ids);
  out->set_source(info.source);
  out->set_error(info.error);
  out->set_tombstones(info.tombstones);
}

namespace {

collections::TagValue TagValueFromProto(bool is_integer, int64_t integer,
                                        const std::string& text) {
  return is_integer ? collections::TagValue::Integer(integer)
                    : collections::TagValue::Text(text);
}

absl::StatusOr<collections::Predicate> PredicateFromProto(
    const pb::Predicate& in, const std::string& field, size_t depth) {
  // Deeper than the filter's limit is refused here, before recursing on.
  if (depth > collections::kMaxPredicateDepth) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": the predicate is nested deeper than ",
                     collections::kMaxPredicateDepth, " levels"));
  }
  collections::Predicate out;
  switch (in.kind_case()) {
    case pb::Predicate::kTag:
      out.kind = collections::Predicate::Kind::kTag;
      out.key = in.tag().key();
      for (const pb::TagValue& v : in.tag().values()) {
        if (v.value_case() == pb::TagValue::VALUE_NOT_SET) {
          return absl::InvalidArgumentError(
              absl::StrCat(field,
                           ".tag.values: a value has neither text nor "
                           "integer set"));
        }
        out.values.push_back(TagValueFromProto(
            v.value_case() == pb::TagValue::kInteger, v.integer(), v.text()));
      }
      return out;
    case pb::Predicate::kRange:
      out.kind = collections::Predicate::Kind::kRange;
      out.name = in.range().name();
      if (in.range().has_min()) out.min = in.range().min();
      if (in.range().has_max()) out.max = in.range().max();
      out.min_exclusive = in.range().min_exclusive();
      out.max_exclusive = in.range().max_exclusive();
      return out;
    case pb::Predicate::kAll:
    case pb::Predicate::kAny: {
      const bool all = in.kind_case() == pb::Predicate::kAll;
      out.kind = all ? collections::Predicate::Kind::kAll
                     : collections::Predicate::Kind::kAny;
      const pb::PredicateList& list = all ? in.all() : in.any();
      for (int i = 0; i < list.predicates_size(); ++i) {
        ENGRAM_ASSIGN_OR_RETURN(
            collections::Predicate child,
            PredicateFromProto(list.predicates(i),
                               absl::StrCat(field, all ? ".all" : ".any",
                                            ".predicates[", i, "]"),
                               depth + 1));
        out.children.push_back(std::move(child));
      }
      return out;
    }
    case pb::Predicate::kNot: {
      out.kind = collections::Predicate::Kind::kNot;
      ENGRAM_ASSIGN_OR_RETURN(
          collections::Predicate child,
          PredicateFromProto(in.not_(), field + ".not", depth + 1));
      out.children.push_back(std::move(child));
      return out;
    }
    case pb::Predicate::KIND_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": no condition set (tag, range, all, any or not)"));
}

}  // namespace

absl::StatusOr<collections::RowLabels> RowLabelsFromProto(
    const pb::RowLabels& in, const std::string& field) {
  collections::RowLabels out;
  for (int i = 0; i < in.tags_size(); ++i) {
    const pb::Tag& t = in.tags(i);
    if (t.value_case() == pb::Tag::VALUE_NOT_SET) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".tags[", i, "]: neither text nor integer is set"));
    }
    collections::Tag tag;
    tag.key = t.key();
    tag.value = TagValueFromProto(t.value_case() == pb::Tag::kInteger,
                                  t.integer(), t.text());
    out.tags.push_back(std::move(tag));
  }
  out.attributes.insert(in.attributes().begin(), in.attributes().end());
  return out;
}

absl::StatusOr<std::vector<collections::RowLabels>> RowLabelsFromProto(
    const google::protobuf::RepeatedPtrField<pb::RowLabels>& in,
    uint64_t first_row) {
  std::vector<collections::RowLabels> out;
  out.reserve(in.size());
  for (int i = 0; i < in.size(); ++i) {
    ENGRAM_ASSIGN_OR_RETURN(
        collections::RowLabels labels,
        RowLabelsFromProto(in.Get(i),
                           absl::StrCat("labels[", first_row + i, "]")));
    out.push_back(std::move(labels));
  }
  return out;
}

absl::StatusOr<std::optional<collections::RowFilter>> RowFilterFromProto(
    const pb::SearchCollectionRequest& request) {
  if (!request.has_filter()) return std::nullopt;
  const pb::RowFilter& in = request.filter();
  collections::RowFilter out;
  out.allow_ids.assign(in.allow_ids().begin(), in.allow_ids().end());
  out.deny_ids.assign(in.deny_ids().begin(), in.deny_ids().end());
  if (in.has_where()) {
    ENGRAM_ASSIGN_OR_RETURN(out.where,
                            PredicateFromProto(in.where(), "filter.where", 1));
  }
  ENGRAM_RETURN_IF_ERROR(collections::ValidateRowFilter(out));
  if (out.empty()) return std::nullopt;
  return out;
}

void GraphInfoToProto(const collections::GraphInfo& info, pb::GraphInfo* out) {
  out->set_name(info.name);
  out->set_num_nodes(info.num_nodes);
  out->set_num_edges(info.num_edges);
  out->set_bytes(info.bytes);
  out->set_residency(info.residency);
  out->set_load_state(info.load_state);
  out->set_source(info.source);
  out->set_version(info.version);
  out->set_pending_changes(info.pending_changes);
}

collections::GraphEdit GraphEditFromProto(
    const pb::UpdateGraphRequest& request) {
  collections::GraphEdit edit;
  edit.add_nodes = request.add_nodes();
  edit.remove_edges.reserve(request.remove_edges_size());
  for (const pb::EdgeRef& e : request.remove_edges()) {
    edit.remove_edges.push_back({e.source(), e.target()});
  }
  edit.set_weights.reserve(request.set_weights_size());
  for (const pb::WeightedEdge& e : request.set_weights()) {
    edit.set_weights.push_back({e.source(), e.target(), e.weight()});
  }
  edit.add_edges.reserve(request.add_edges_size());
  for (const pb::WeightedEdge& e : request.add_edges()) {
    edit.add_edges.push_back({e.source(), e.target(), e.weight()});
  }
  return edit;
}

void GraphUpdateToProto(const collections::GraphUpdateResult& result,
                        pb::UpdateGraphResponse* out) {
  GraphInfoToProto(collections::DescribeVersion(*result.graph),
                   out->mutable_graph());
  out->set_edges_removed(result.counts.edges_removed);
  out->set_edges_reweighted(result.counts.edges_reweighted);
  out->set_edges_added(result.counts.edges_added);
  out->set_not_found(result.counts.not_found);
  out->mutable_not_found_edges()->Reserve(
      static_cast<int>(result.counts.not_found_edges.size()));
  for (const collections::GraphEdgeRef& e : result.counts.not_found_edges) {
    pb::EdgeRef* ref = out->add_not_found_edges();
    ref->set_source(e.source);
    ref->set_target(e.target);
  }
  out->set_replayed(result.replayed);
}

void SearchResultToProto(const collections::SearchResult& result,
                         pb::SearchCollectionResponse* out) {
  out->mutable_results()->Reserve(static_cast<int>(result.top.size()));
  for (const std::vector<collections::SearchHit>& list : result.top) {
    pb::CollectionHits* hits = out->add_results();
    const int k = static_cast<int>(list.size());
    hits->mutable_ids()->Reserve(k);
    hits->mutable_scores()->Reserve(k);
    hits->mutable_rows()->Reserve(k);
    for (const collections::SearchHit& hit : list) {
      hits->add_ids(hit.id);
      hits->add_scores(hit.score);
      hits->add_rows(hit.row);
    }
  }
  ReportToProto(result.report, out->mutable_report());
  out->set_batch_queries(result.batch_queries);
  out->set_batch_requests(result.batch_requests);
  out->set_queue_seconds(result.queue_seconds);
}

void ReportToProto(const dispatch::ExecutionReport& report,
                   pb::ExecutionReport* out) {
  out->set_backend(BackendToProto(report.backend));
  out->set_decided_by(report.decided_by);
  out->set_fallback_reason(report.fallback_reason);
  out->set_chunks(report.chunks);
  out->set_compute_seconds(report.compute_seconds);
}

void EngineStatsToProto(const core::EngineStats& stats,
                        pb::GetStatsResponse* out) {
  out->set_window_seconds(stats.window_seconds);
  for (const core::EngineStats::Backend& b : stats.backends) {
    pb::BackendStats* p = out->add_backends();
    p->set_operation(dispatch::OperationName(b.operation));
    p->set_backend(BackendToProto(b.backend));
    p->set_requests(b.requests);
    p->set_work_items(b.work_items);
    p->set_compute_seconds_total(b.compute_seconds_total);
    p->set_p50_seconds(b.p50_seconds);
    p->set_p99_seconds(b.p99_seconds);
    p->set_requests_per_second(b.requests_per_second);
    p->set_work_items_per_second(b.work_items_per_second);
    p->set_success_rate(b.success_rate);
    p->set_success_outcomes(b.success_outcomes);
  }
  for (const core::EngineStats::OperationStats& o : stats.operations) {
    pb::OperationStats* p = out->add_operations();
    p->set_operation(dispatch::OperationName(o.operation));
    p->set_requests(o.requests);
    p->set_requests_in_window(o.requests_in_window);
    p->set_fallbacks(o.fallbacks);
    p->set_fallback_rate(o.fallback_rate);
    p->set_ooms(o.ooms);
    p->set_oom_retries(o.oom_retries);
    p->set_ooms_per_minute(o.ooms_per_minute);
  }
  for (const core::EngineStats::Fallback& f : stats.fallbacks) {
    pb::FallbackStats* p = out->add_fallbacks();
    p->set_operation(dispatch::OperationName(f.operation));
    p->set_reason(f.reason);
    p->set_count(f.count);
    p->set_count_in_window(f.count_in_window);
    p->set_rate(f.rate);
  }
  for (const core::EngineStats::Speedup& s : stats.speedups) {
    pb::SpeedupStats* p = out->add_speedups();
    p->set_operation(dispatch::OperationName(s.operation));
    p->set_size_bucket(s.size_bucket);
    p->set_min_work(s.min_work);
    p->set_speedup(s.speedup);
    p->set_cpu_seconds_per_unit(s.cpu_seconds_per_unit);
    p->set_gpu_seconds_per_unit(s.gpu_seconds_per_unit);
    p->set_cpu_samples(s.cpu_samples);
    p->set_gpu_samples(s.gpu_samples);
  }
  for (const core::EngineStats::CostModel& m : stats.cost_models) {
    pb::CostModelStats* p = out->add_cost_models();
    p->set_operation(dispatch::OperationName(m.operation));
    p->set_backend(dispatch::BackendName(m.backend));
    p->set_samples(m.fit.samples);
    p->set_usable(m.fit.usable);
    p->set_fixed_seconds(m.fit.fixed_seconds);
    p->set_seconds_per_byte(m.fit.seconds_per_byte);
    p->set_seconds_per_unit(m.fit.seconds_per_unit);
    p->set_relative_error(m.fit.relative_error);
    p->set_min_work(m.fit.min_work);
    p->set_max_work(m.fit.max_work);
    p->set_prior(m.fit.prior);
  }
  pb::BreakerStats* breaker = out->mutable_breaker();
  breaker->set_state(dispatch::BreakerStateName(stats.breaker.state));
  breaker->set_retry_after_seconds(
      stats.breaker.retry_after == absl::InfiniteDuration()
          ? std::numeric_limits<double>::infinity()
          : absl::ToDoubleSeconds(stats.breaker.retry_after));
  breaker->set_consecutive_failures(stats.breaker.consecutive_failures);
  breaker->set_window_calls(stats.breaker.window_calls);
  breaker->set_window_failures(stats.breaker.window_failures);
  breaker->set_consecutive_trips(stats.breaker.consecutive_trips);
  breaker->set_last_error(stats.breaker.last_error);
  if (stats.memory.has_value()) {
    const dispatch::MemoryAssessment& m = *stats.memory;
    pb::GpuMemoryStats* p = out->mutable_gpu_memory();
    p->set_has_reading(m.has_reading);
    p->set_free_bytes(m.reading.free_bytes);
    p->set_total_bytes(m.reading.total_bytes);
    p->set_limit_bytes(m.budget_bytes);
    p->set_reading_age_seconds(m.has_reading
                                   ? absl::ToDoubleSeconds(m.age)
                                   : std::numeric_limits<double>::infinity());
    p->set_stale(m.stale);
    p->set_high_pressure(m.high_pressure);
    p->set_query_failures(m.probe_failures);
    p->set_last_query_error(m.last_probe_error);
    if (stats.memory_ledger.has_value()) {
      const dispatch::DeviceMemoryLedger::Stats& l = *stats.memory_ledger;
      p->set_ledger_enabled(true);
      p->set_ledger_reserved_bytes(l.reserved_bytes);
      p->set_ledger_capacity_bytes(l.capacity_bytes);
      p->set_ledger_waits(l.waits);
      p->set_ledger_refusals(l.refusals);
    }
  }
  out->set_last_gpu_error(stats.last_gpu_error);
  out->set_last_gpu_error_age_seconds(stats.last_gpu_error_age_seconds);
}

}  // namespace engram::server
