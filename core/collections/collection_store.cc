#include "core/collections/collection_store.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <new>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "core/collections/names.h"
#include "core/collections/row_index.h"
#include "kernels/row_checks.h"

namespace engram::collections {
namespace {

uint64_t BytesPerRow(uint32_t dimension, bool with_ids) {
  return uint64_t{dimension} * sizeof(float) + sizeof(float) +
         (with_ids ? sizeof(uint64_t) : 0);
}

}  // namespace

uint64_t Collection::IdOf(uint64_t row) const {
  // The last segment whose first row is <= row.
  auto it =
      std::upper_bound(segments_.begin(), segments_.end(), row,
                       [](uint64_t r, const std::shared_ptr<const Segment>& s) {
                         return r < s->first_row();
                       });
  const Segment& segment = **(it - 1);
  return segment.IdOf(row - segment.first_row());
}

bool Collection::has_ids() const {
  for (const auto& s : segments_) {
    if (!s->ids().empty()) return true;
  }
  return false;
}

bool Collection::ids_everywhere() const {
  for (const auto& s : segments_) {
    if (s->rows() > 0 && s->ids().empty()) return false;
  }
  return true;
}

std::shared_ptr<const RowIndex> Collection::Index() const {
  absl::MutexLock lock(&cache_mu_);
  if (index_ == nullptr) index_ = RowIndex::Build(*this);
  return index_;
}

std::shared_ptr<const RowSelection> Collection::LiveRows() const {
  if (dead_count_ == 0) return nullptr;
  absl::MutexLock lock(&cache_mu_);
  if (live_ == nullptr) {
    auto live = std::make_shared<RowSelection>();
    live->rows = rows_;
    live->passed = rows_ - dead_count_;
    live->words.resize((rows_ + 63) / 64);
    for (size_t i = 0; i < live->words.size(); ++i) {
      live->words[i] = i < dead_->size() ? ~(*dead_)[i] : ~uint64_t{0};
    }
    if (rows_ % 64 != 0) {
      live->words.back() &= (uint64_t{1} << (rows_ % 64)) - 1;
    }
    live_ = std::move(live);
  }
  return live_;
}

std::vector<uint64_t> Collection::RowsOf(uint64_t id) const {
  return Index()->Find(id);
}

bool Collection::Committed(absl::string_view key) const {
  for (const CommittedKey& k : *committed_keys_) {
    if (k.key == key) return true;
  }
  return false;
}

absl::Status ValidateCollectionSpec(const CollectionSpec& spec) {
  ENGRAM_RETURN_IF_ERROR(ValidateName("name", spec.name));
  if (spec.dimension == 0 || spec.dimension > kMaxDimension) {
    return absl::InvalidArgumentError(
        absl::StrCat("dimension is ", spec.dimension, ", must be in [1, ",
                     kMaxDimension, "]"));
  }
  if (spec.metadata.size() > kMaxMetadataEntries) {
    return absl::InvalidArgumentError(
        absl::StrCat("metadata has ", spec.metadata.size(),
                     " entries, at most ", kMaxMetadataEntries, " allowed"));
  }
  size_t bytes = 0;
  for (const auto& [key, value] : spec.metadata) {
    if (key.empty()) {
      return absl::InvalidArgumentError("metadata has an empty key");
    }
    bytes += key.size() + value.size();
  }
  if (bytes > kMaxMetadataBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("metadata holds ", bytes, " bytes, at most ",
                     kMaxMetadataBytes, " allowed"));
  }
  return absl::OkStatus();
}

// --- CollectionUpload ---

CollectionUpload::CollectionUpload(CollectionStore* store,
                                   const UploadOptions& options,
                                   uint32_t dimension, uint64_t target_uid)
    : store_(store),
      options_(options),
      dimension_(dimension),
      target_uid_(target_uid) {}

CollectionUpload::~CollectionUpload() { Abort(); }

absl::Status CollectionUpload::AddLabels(uint64_t first_row,
                                         absl::Span<const RowLabels> labels) {
  if (finished_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "upload to collection \"", options_.name, "\" is already finished"));
  }
  if (first_row > options_.rows || labels.size() > options_.rows - first_row) {
    return absl::InvalidArgumentError(absl::StrCat(
        "labels for rows [", first_row, ", ", first_row + labels.size(),
        ") pass the ", options_.rows, " rows of the upload"));
  }
  for (size_t i = 0; i < labels.size(); ++i) {
    ENGRAM_RETURN_IF_ERROR(ValidateRowLabels(
        absl::StrCat("labels[", first_row + i, "]"), labels[i]));
  }
  if (labels_.size() < first_row + labels.size()) {
    labels_.resize(first_row + labels.size());
  }
  std::copy(labels.begin(), labels.end(), labels_.begin() + first_row);
  return absl::OkStatus();
}

absl::Status CollectionUpload::Append(const kernels::MatrixView& chunk,
                                      absl::Span<const uint64_t> ids,
                                      absl::Span<const RowLabels> labels) {
  if (finished_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "upload to collection \"", options_.name, "\" is already finished"));
  }
  if (options_.blocks) {
    return absl::FailedPreconditionError(
        absl::StrCat("the upload to collection \"", options_.name,
                     "\" takes its rows as blocks, not through Append"));
  }
  if (chunk.rows == 0) return absl::OkStatus();
  if (chunk.cols != dimension_) {
    return absl::InvalidArgumentError(
        absl::StrCat("vectors.cols (", chunk.cols,
                     ") must equal the dimension of collection \"",
                     options_.name, "\" (", dimension_, ")"));
  }
  if (chunk.data == nullptr) {
    return absl::InvalidArgumentError("vectors has no data");
  }
  if (options_.with_ids && ids.size() != chunk.rows) {
    return absl::InvalidArgumentError(
        absl::StrCat("ids has ", ids.size(), " entries, expected one per row (",
                     chunk.rows, ")"));
  }
  if (!options_.with_ids && !ids.empty()) {
    return absl::InvalidArgumentError(
        "ids given, but the upload was started without ids");
  }
  if (chunk.rows > options_.rows - rows_received_) {
    return absl::InvalidArgumentError(
        absl::StrCat("vectors brings ", chunk.rows, " rows, but only ",
                     options_.rows - rows_received_, " of the declared ",
                     options_.rows, " remain"));
  }
  if (!labels.empty() && labels.size() != chunk.rows) {
    return absl::InvalidArgumentError(absl::StrCat(
        "labels has ", labels.size(),
        " entries, expected none or one per row (", chunk.rows, ")"));
  }
  for (size_t i = 0; i < labels.size(); ++i) {
    ENGRAM_RETURN_IF_ERROR(ValidateRowLabels(
        absl::StrCat("labels[", rows_received_ + i, "]"), labels[i]));
  }
  if (options_.replace_ids) {
    absl::flat_hash_set<uint64_t> seen;
    for (size_t i = 0; i < ids.size(); ++i) {
      auto it = upsert_ids_.find(ids[i]);
      if (it != upsert_ids_.end() || !seen.insert(ids[i]).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("ids[", rows_received_ + i, "] repeats id ", ids[i],
                         "; ids must be unique within the call"));
      }
    }
  }
  // Copy and check in one pass; rows_received_ moves only when the whole
  // chunk is good, so a refused chunk leaves nothing behind.
  Segment& s = *staged_;
  float* dst = s.data_.data() + rows_received_ * dimension_;
  float* norms = s.norms_.data() + rows_received_;
  for (size_t r = 0; r < chunk.rows; ++r) {
    const float* src = chunk.row(r);
    double sum;
    ENGRAM_RETURN_IF_ERROR(kernels::CheckFiniteRow("vectors", src, dimension_,
                                                   rows_received_ + r, &sum));
    std::memcpy(dst + r * dimension_, src, dimension_ * sizeof(float));
    norms[r] = static_cast<float>(std::sqrt(sum));
  }
  if (options_.with_ids) {
    std::memcpy(s.ids_.data() + rows_received_, ids.data(),
                ids.size() * sizeof(uint64_t));
  }
  if (writer_ != nullptr) {
    ENGRAM_RETURN_IF_ERROR(writer_->Write(
        rows_received_, dst,
        options_.with_ids ? s.ids_.data() + rows_received_ : nullptr,
        chunk.rows));
  }
  if (!labels.empty()) {
    labels_.resize(rows_received_);
    labels_.insert(labels_.end(), labels.begin(), labels.end());
  }
  if (options_.replace_ids) {
    for (size_t i = 0; i < ids.size(); ++i) {
      upsert_ids_[ids[i]] = rows_received_ + i;
    }
  }
  rows_received_ += chunk.rows;
  return absl::OkStatus();
}

absl::Status CollectionUpload::CheckStageable(uint64_t rows) const {
  if (finished_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "upload to collection \"", options_.name, "\" is already finished"));
  }
  if (options_.durable && store_->options_.journal != nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("the upload to collection \"", options_.name,
                     "\" is journaled: its rows go through Append"));
  }
  if (rows == 0 || rows > options_.rows - rows_received_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot stage ", rows, " rows: ", options_.rows - rows_received_,
        " of the declared ", options_.rows, " remain"));
  }
  return absl::OkStatus();
}

void CollectionUpload::DropUnreceivedBlock() {
  uint64_t staged = 0;
  for (const auto& block : blocks_) staged += block->rows();
  if (staged > rows_received_) blocks_.pop_back();
}

absl::StatusOr<std::unique_ptr<StagedRows>> CollectionUpload::StageRows(
    uint64_t rows) {
  ENGRAM_RETURN_IF_ERROR(CheckStageable(rows));
  if (!options_.blocks) {
    Segment& s = *staged_;
    float* vectors = s.data_.data() + rows_received_ * dimension_;
    return std::unique_ptr<StagedRows>(new StagedRows(
        this, ++stagings_, rows_received_, rows, dimension_, vectors, vectors,
        s.norms_.data() + rows_received_,
        options_.with_ids ? s.ids_.data() + rows_received_ : nullptr));
  }
  DropUnreceivedBlock();
  // The budget was reserved for the whole upload at BeginUpload.
  auto block = std::unique_ptr<Segment>(new Segment());
  try {
    block->data_ = kernels::LargeBuffer<float>(rows * dimension_);
    block->norms_ = kernels::LargeBuffer<float>(rows);
    if (options_.with_ids) block->ids_ = kernels::LargeBuffer<uint64_t>(rows);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate ", rows, " rows x ", dimension_,
                     " for collection \"", options_.name, "\""));
  }
  block->vectors_ = kernels::MatrixView{block->data_.data(),
                                        static_cast<size_t>(rows), dimension_};
  block->ids_view_ =
      absl::MakeConstSpan(block->ids_.data(), block->ids_.size());
  Segment& b = *block;
  blocks_.push_back(std::move(block));
  return std::unique_ptr<StagedRows>(
      new StagedRows(this, ++stagings_, rows_received_, rows, dimension_,
                     b.data_.data(), b.data_.data(), b.norms_.data(),
                     options_.with_ids ? b.ids_.data() : nullptr));
}

absl::StatusOr<std::unique_ptr<StagedRows>> CollectionUpload::AdoptRows(
    uint64_t rows, const float* vectors, const uint64_t* ids,
    std::shared_ptr<const void> backing) {
  ENGRAM_RETURN_IF_ERROR(CheckStageable(rows));
  if (!options_.blocks) {
    return absl::FailedPreconditionError(
        absl::StrCat("the upload to collection \"", options_.name,
                     "\" was not started to take blocks"));
  }
  if (vectors == nullptr || backing == nullptr ||
      reinterpret_cast<uintptr_t>(vectors) % 64 != 0) {
    return absl::InvalidArgumentError(
        "adopted vectors must be present, kept alive and 64-byte aligned");
  }
  if (ids != nullptr && !options_.with_ids) {
    return absl::InvalidArgumentError(
        "ids given, but the upload was started without ids");
  }
  if (ids != nullptr &&
      reinterpret_cast<uintptr_t>(ids) % alignof(uint64_t) != 0) {
    return absl::InvalidArgumentError("adopted ids must be 8-byte aligned");
  }
  DropUnreceivedBlock();
  auto block = std::unique_ptr<Segment>(new Segment());
  try {
    block->norms_ = kernels::LargeBuffer<float>(rows);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate the norms of ", rows,
                     " rows for collection \"", options_.name, "\""));
  }
  block->backing_ = std::move(backing);
  block->vectors_ =
      kernels::MatrixView{vectors, static_cast<size_t>(rows), dimension_};
  if (ids != nullptr) block->ids_view_ = absl::MakeConstSpan(ids, rows);
  Segment& b = *block;
  blocks_.push_back(std::move(block));
  return std::unique_ptr<StagedRows>(
      new StagedRows(this, ++stagings_, rows_received_, rows, dimension_,
                     nullptr, vectors, b.norms_.data(), nullptr));
}

absl::Status CollectionUpload::Receive(const StagedRows& block) {
  if (finished_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "upload to collection \"", options_.name, "\" is already finished"));
  }
  if (block.upload_ != this || block.first_row_ != rows_received_) {
    return absl::FailedPreconditionError(
        absl::StrCat("staged rows from ", block.first_row_,
                     " are not the next rows of the upload to collection \"",
                     options_.name, "\""));
  }
  // A block staged before the last one was dropped with its storage.
  if (options_.blocks && block.serial_ != stagings_) {
    return absl::FailedPreconditionError(
        absl::StrCat("staged rows from ", block.first_row_,
                     " were replaced by a later block"));
  }
  // Relaxed: the threads that checked were joined before this call.
  if (block.checked_.load(std::memory_order_relaxed) != block.rows_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "staged rows from ", block.first_row_, " were not all checked"));
  }
  rows_received_ += block.rows_;
  return absl::OkStatus();
}

absl::Status StagedRows::Check(uint64_t begin, uint64_t end) {
  if (begin > end || end > rows_) {
    return absl::InvalidArgumentError(absl::StrCat("rows [", begin, ", ", end,
                                                   ") are not within the ",
                                                   rows_, " staged rows"));
  }
  for (uint64_t r = begin; r < end; ++r) {
    double sum;
    ENGRAM_RETURN_IF_ERROR(
        kernels::CheckFiniteRow("vectors", checked_rows_ + r * dimension_,
                                dimension_, first_row_ + r, &sum));
    norms_[r] = static_cast<float>(std::sqrt(sum));
  }
  checked_.fetch_add(end - begin, std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const Collection>> CollectionUpload::Commit() {
  if (finished_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "upload to collection \"", options_.name, "\" is already finished"));
  }
  if (rows_received_ != options_.rows) {
    const uint64_t received = rows_received_;
    Abort();
    return absl::FailedPreconditionError(absl::StrCat(
        "upload to collection \"", options_.name, "\" received ", received,
        " of the ", options_.rows, " rows it declared; nothing was committed"));
  }
  absl::StatusOr<std::shared_ptr<const Collection>> published =
      store_->Publish(this);
  Abort();  // releases the claim; the segment has moved on success
  return published;
}

void CollectionUpload::Abort() {
  if (finished_) return;
  finished_ = true;
  writer_.reset();  // stops reading staged_ and removes what it stored
  staged_.reset();  // frees the rows and gives back their reservation
  blocks_.clear();
  reservation_.Release();
  store_->Unstage(*this);
}

// --- CollectionStore ---

absl::StatusOr<std::unique_ptr<CollectionStore>> CollectionStore::Create(
    const Options& options) {
  if (options.budget == nullptr) {
    return absl::InvalidArgumentError("collection store: a budget is required");
  }
  if (!(options.compact_dead_share > 0 && options.compact_dead_share <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("collection store: compact_dead_share is ",
                     options.compact_dead_share, ", must be in (0, 1]"));
  }
  std::unique_ptr<CollectionStore> store(new CollectionStore(options));
  {
    absl::MutexLock lock(&store->mu_);
    store->UpdateGaugesLocked();
  }
  if (options.compact_in_background) {
    CollectionStore* s = store.get();
    store->compactor_ = std::thread([s] { s->CompactLoop(); });
  }
  return store;
}

CollectionStore::~CollectionStore() {
  {
    absl::MutexLock lock(&compact_mu_);
    stopping_ = true;
  }
  if (compactor_.joinable()) compactor_.join();
}

absl::StatusOr<std::shared_ptr<const Collection>>
CollectionStore::CreateCollection(const CollectionSpec& spec) {
  return AddEmpty(spec, 1, "upload", /*durable=*/true);
}

absl::StatusOr<std::shared_ptr<const Collection>> CollectionStore::RestoreEmpty(
    const CollectionSpec& spec, uint64_t version, const std::string& source) {
  return AddEmpty(spec, std::max<uint64_t>(version, 1),
                  source.empty() ? "upload" : source, /*durable=*/false);
}

absl::StatusOr<std::shared_ptr<const Collection>> CollectionStore::AddEmpty(
    const CollectionSpec& spec, uint64_t version, const std::string& source,
    bool durable) {
  ENGRAM_RETURN_IF_ERROR(ValidateCollectionSpec(spec));
  std::shared_ptr<Collection> c(new Collection());
  c->name_ = spec.name;
  c->dimension_ = spec.dimension;
  c->metadata_ = spec.metadata;
  c->uid_ = NewResidentId();
  c->version_ = version;
  c->source_ = source;
  absl::MutexLock commit(&commit_mu_);
  {
    absl::MutexLock lock(&mu_);
    if (collections_.count(c->name_) > 0 || creating_.count(c->name_) > 0 ||
        lost_.count(c->name_) > 0) {
      return absl::AlreadyExistsError(
          absl::StrCat("collection \"", c->name_, "\" already exists"));
    }
    // Reserved while the journal runs, as a creating upload reserves it, so
    // that no upload can create the name meanwhile.
    creating_[c->name_] = 1;
  }
  absl::Status journaled = absl::OkStatus();
  if (durable && options_.journal != nullptr) {
    journaled = options_.journal->Commit(*c, "");
  }
  {
    absl::MutexLock lock(&mu_);
    creating_.erase(c->name_);
    if (!journaled.ok()) return journaled;
    collections_[c->name_].current = c;
    UpdateGaugesLocked();
  }
  if (options_.observer != nullptr) options_.observer->OnCommitted(c);
  return std::shared_ptr<const Collection>(std::move(c));
}

absl::Status CollectionStore::MarkLost(const std::string& name,
                                       const absl::Status& why) {
  absl::MutexLock lock(&mu_);
  if (collections_.count(name) > 0 || creating_.count(name) > 0) {
    return absl::AlreadyExistsError(
        absl::StrCat("collection \"", name, "\" already exists"));
  }
  lost_[name] = why;
  return absl::OkStatus();
}

absl::Status CollectionStore::LostLocked(absl::string_view name) const {
  auto it = lost_.find(name);
  return it == lost_.end() ? absl::OkStatus() : it->second;
}

absl::StatusOr<std::unique_ptr<CollectionUpload>> CollectionStore::BeginUpload(
    const UploadOptions& options) {
  ENGRAM_RETURN_IF_ERROR(ValidateName("name", options.name));
  if (options.rows == 0) {
    return absl::InvalidArgumentError("rows must be >= 1");
  }
  if (options.create) {
    ENGRAM_RETURN_IF_ERROR(ValidateCollectionSpec(
        CollectionSpec{options.name, options.dimension, options.metadata}));
  } else if (!options.metadata.empty()) {
    return absl::InvalidArgumentError(
        "metadata can only be given when the upload creates the collection");
  }
  if (options.replace_ids && !options.with_ids) {
    return absl::InvalidArgumentError("rows changed by id need ids");
  }
  if (options.replace && (!options.create || options.durable)) {
    return absl::InvalidArgumentError(
        "only a restoring create may replace a collection");
  }
  if (options.rows > kMaxCollectionRows) {
    return absl::ResourceExhaustedError(
        absl::StrCat("rows is ", options.rows, ", over the limit of ",
                     kMaxCollectionRows, " rows per collection"));
  }
  uint32_t dimension = options.dimension;
  uint64_t target_uid = 0;
  {
    absl::MutexLock lock(&mu_);
    auto it = collections_.find(options.name);
    if (options.create) {
      if ((it != collections_.end() && !options.replace) ||
          creating_.count(options.name) > 0 ||
          (lost_.count(options.name) > 0 && !options.replace)) {
        return absl::AlreadyExistsError(
            absl::StrCat("collection \"", options.name, "\" already exists"));
      }
    } else {
      ENGRAM_RETURN_IF_ERROR(LostLocked(options.name));
      if (it == collections_.end()) {
        return absl::NotFoundError(
            absl::StrCat("collection \"", options.name, "\" does not exist"));
      }
      const Collection& current = *it->second.current;
      if (dimension != 0 && dimension != current.dimension()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "dimension (", dimension, ") must equal the dimension of ",
            "collection \"", options.name, "\" (", current.dimension(), ")"));
      }
      if (options.rows > kMaxCollectionRows - current.rows()) {
        return absl::ResourceExhaustedError(
            absl::StrCat("collection \"", options.name, "\" holds ",
                         current.rows(), " rows; ", options.rows,
                         " more would pass the limit of ", kMaxCollectionRows));
      }
      if (options.replace_ids && !current.ids_everywhere()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "collection \"", options.name,
            "\" has rows uploaded without ids; rows can only be changed by "
            "id in a collection whose every row has one"));
      }
      if (options.expected_version != 0 &&
          options.expected_version != current.version()) {
        return absl::AbortedError(
            absl::StrCat("expected_version is ", options.expected_version,
                         " but collection \"", options.name,
                         "\" is at version ", current.version()));
      }
      dimension = current.dimension();
      target_uid = current.uid();
    }
  }

  // Reserve, then allocate, both outside the lock: a large allocation must
  // not stall every other store call.
  const uint64_t bytes =
      options.rows * BytesPerRow(dimension, options.with_ids);
  ENGRAM_ASSIGN_OR_RETURN(
      Reservation reservation,
      options_.budget->Reserve(
          bytes, absl::StrCat("upload of ", options.rows, " rows x ", dimension,
                              " to collection \"", options.name, "\"")));
  if (options.blocks && options.durable && options_.journal != nullptr) {
    return absl::InvalidArgumentError(
        "an upload the journal stores cannot take its rows as blocks");
  }
  std::unique_ptr<Segment> segment;
  if (!options.blocks) {
    segment = std::unique_ptr<Segment>(new Segment());
    try {
      segment->data_ = kernels::LargeBuffer<float>(options.rows * dimension);
      segment->norms_ = kernels::LargeBuffer<float>(options.rows);
      if (options.with_ids) {
        segment->ids_ = kernels::LargeBuffer<uint64_t>(options.rows);
      }
    } catch (const std::bad_alloc&) {
      return absl::ResourceExhaustedError(
          absl::StrCat("cannot allocate ", bytes, " bytes for collection \"",
                       options.name, "\""));
    }
    segment->reservation_ = std::move(reservation);
    segment->vectors_ = kernels::MatrixView{
        segment->data_.data(), static_cast<size_t>(options.rows), dimension};
    segment->ids_view_ =
        absl::MakeConstSpan(segment->ids_.data(), segment->ids_.size());
  }
  // A durable upload's rows go to storage as they arrive, so that its
  // commit has only the rest to write.
  std::unique_ptr<SegmentWriter> writer;
  if (options.durable && options_.journal != nullptr) {
    ENGRAM_ASSIGN_OR_RETURN(
        writer, options_.journal->BeginSegment(options.name, dimension,
                                               options.rows, options.with_ids));
  }

  // Claim the name (create) or count the staged append, re-checking what
  // may have changed while the lock was released.
  {
    absl::MutexLock lock(&mu_);
    auto it = collections_.find(options.name);
    if (options.create) {
      if ((it != collections_.end() && !options.replace) ||
          creating_.count(options.name) > 0 ||
          (lost_.count(options.name) > 0 && !options.replace)) {
        return absl::AlreadyExistsError(
            absl::StrCat("collection \"", options.name, "\" already exists"));
      }
      creating_[options.name] = 1;
    } else {
      if (it == collections_.end() || it->second.current->uid() != target_uid) {
        return absl::NotFoundError(
            absl::StrCat("collection \"", options.name, "\" does not exist"));
      }
      ++it->second.appends_staged;
    }
  }
  std::unique_ptr<CollectionUpload> upload(
      new CollectionUpload(this, options, dimension, target_uid));
  upload->staged_ = std::move(segment);
  upload->writer_ = std::move(writer);
  if (options.blocks) upload->reservation_ = std::move(reservation);
  return upload;
}

absl::StatusOr<std::shared_ptr<const Collection>> CollectionStore::Publish(
    CollectionUpload* upload) {
  const UploadOptions& o = upload->options_;
  std::shared_ptr<Collection> next(new Collection());
  // The new rows: the staged segment, or a `blocks` upload's blocks, each
  // paid for by its share of the upload's reservation.
  std::vector<std::shared_ptr<Segment>> added;
  uint64_t added_rows = 0;
  if (upload->staged_ != nullptr) {
    added.push_back(std::move(upload->staged_));
  } else {
    const uint64_t row_bytes = BytesPerRow(upload->dimension_, o.with_ids);
    for (std::unique_ptr<Segment>& block : upload->blocks_) {
      block->reservation_ =
          upload->reservation_.Split(block->rows() * row_bytes);
      added.push_back(std::move(block));
    }
    upload->blocks_.clear();
  }
  for (const auto& segment : added) {
    segment->id_ = NewResidentId();
    added_rows += segment->rows();
  }
  // Declared after `added`, so that on every return it stops reading the
  // rows before they can be freed.
  std::unique_ptr<SegmentWriter> writer = std::move(upload->writer_);
  CollectionJournal* journal = o.durable ? options_.journal : nullptr;
  // A keyed upload already committed (a client's resend) publishes nothing.
  if (std::shared_ptr<const Collection> done =
          FindCommitted(o.name, o.idempotency_key)) {
    upload->replayed_ = true;
    return done;
  }
  if (!upload->labels_.empty()) {
    upload->labels_.resize(o.rows);
    uint64_t first = 0;
    for (const auto& segment : added) {
      ENGRAM_ASSIGN_OR_RETURN(
          std::shared_ptr<const SegmentLabels> labels,
          SegmentLabels::Build(absl::MakeConstSpan(upload->labels_)
                                   .subspan(first, segment->rows()),
                               first));
      ENGRAM_ASSIGN_OR_RETURN(
          segment->labels_reservation_,
          options_.budget->Reserve(
              labels->bytes(),
              absl::StrCat("labels of ", segment->rows(),
                           " rows of collection \"", o.name, "\"")));
      segment->labels_ = std::move(labels);
      first += segment->rows();
    }
    std::vector<RowLabels>().swap(upload->labels_);
  }
  // The rows go to storage before any lock is taken: the one slow step.
  std::string handle;
  if (writer != nullptr) {
    ENGRAM_ASSIGN_OR_RETURN(handle, writer->Finish());
  } else if (journal != nullptr) {
    // Only a staged upload is journaled (BeginUpload refuses blocks).
    ENGRAM_ASSIGN_OR_RETURN(handle,
                            journal->WriteSegment(o.name, *added.front()));
  }
  absl::MutexLock commit(&commit_mu_);
  // The version the commit follows: null for a create (or a replacing
  // create of an absent name).
  std::shared_ptr<const Collection> current;
  // Set when a duplicate of this keyed upload committed while it ran.
  std::shared_ptr<const Collection> replay;
  absl::Status status = [&]() -> absl::Status {
    absl::MutexLock lock(&mu_);
    auto it = collections_.find(o.name);
    if (o.create) {
      if (o.replace && it != collections_.end()) current = it->second.current;
      next->name_ = o.name;
      next->dimension_ = upload->dimension_;
      next->metadata_ = o.metadata;
      next->uid_ = NewResidentId();
      next->version_ = std::max<uint64_t>(o.version, 1);
      next->source_ = o.source.empty() ? "upload" : o.source;
      next->committed_keys_ =
          std::make_shared<const std::vector<CommittedKey>>(o.restored_keys);
      next->rewritten_ = current != nullptr;
      current = nullptr;
    } else {
      if (it == collections_.end() ||
          it->second.current->uid() != upload->target_uid_) {
        return absl::NotFoundError(
            absl::StrCat("collection \"", o.name,
                         "\" was deleted while the upload ran; nothing was "
                         "committed"));
      }
      current = it->second.current;
      if (!o.idempotency_key.empty() && current->Committed(o.idempotency_key)) {
        replay = current;
        return absl::OkStatus();
      }
      if (o.expected_version != 0 && current->version() != o.expected_version) {
        return absl::AbortedError(
            absl::StrCat("expected_version is ", o.expected_version,
                         " but collection \"", o.name, "\" is at version ",
                         current->version(), "; nothing was committed"));
      }
      if (added_rows > kMaxCollectionRows - current->rows()) {
        return absl::ResourceExhaustedError(
            absl::StrCat("collection \"", o.name, "\" would pass the limit of ",
                         kMaxCollectionRows, " rows; nothing was committed"));
      }
      next->name_ = current->name_;
      next->dimension_ = current->dimension_;
      next->metadata_ = current->metadata_;
      next->uid_ = current->uid_;
      next->version_ = current->version_ + 1;
      next->source_ = current->source_;
      next->segments_ = current->segments_;
      next->rows_ = current->rows_;
      next->bytes_ = current->bytes_;
      next->committed_keys_ = current->committed_keys_;
      next->dead_ = current->dead_;
      next->dead_count_ = current->dead_count_;
      if (!o.durable) {
        // A version another replica committed, loaded from the catalog: its
        // number and keys are the catalog's.
        if (o.version > current->version_) next->version_ = o.version;
        next->committed_keys_ =
            std::make_shared<const std::vector<CommittedKey>>(o.restored_keys);
      }
    }
    if (!o.idempotency_key.empty()) {
      auto keys =
          std::make_shared<std::vector<CommittedKey>>(*next->committed_keys_);
      keys->push_back({o.idempotency_key, next->version_});
      if (keys->size() > kMaxCommittedKeys) {
        keys->erase(keys->begin(),
                    keys->begin() + (keys->size() - kMaxCommittedKeys));
      }
      next->committed_keys_ = std::move(keys);
    }
    for (std::shared_ptr<Segment>& segment : added) {
      segment->first_row_ = next->rows_;
      next->rows_ += segment->rows();
      next->bytes_ += segment->bytes();
      next->segments_.push_back(std::move(segment));
    }
    return absl::OkStatus();
  }();
  if (replay != nullptr) {
    if (journal != nullptr) journal->DiscardSegment(handle);
    upload->replayed_ = true;
    return replay;
  }
  // Rows killed by this commit, outside mu_ (finding them may build the
  // index); commit_mu_ keeps `current` the current version meanwhile.
  RowIndex::Changes changes;
  std::vector<uint64_t> killed;
  if (status.ok() && o.replace_ids && current != nullptr) {
    if (!current->ids_everywhere()) {
      status = absl::FailedPreconditionError(absl::StrCat(
          "collection \"", o.name,
          "\" has rows uploaded without ids; nothing was committed"));
    } else {
      const Segment& rows = *next->segments_.back();
      for (uint64_t i = 0; i < rows.rows(); ++i) {
        const uint64_t id = rows.IdOf(i);
        const std::vector<uint64_t> held = current->RowsOf(id);
        killed.insert(killed.end(), held.begin(), held.end());
        upload->replaced_ += held.empty() ? 0 : 1;
        changes[id] = RowIndex::Rows{rows.first_row() + i};
      }
    }
  }
  if (status.ok()) {
    if (!o.durable) {
      // A stored version: its dead rows are the stored ones.
      status = SetDead(next.get(), o.restored_dead);
    } else {
      status = KillRows(next.get(), std::move(killed));
    }
  }
  if (status.ok() && o.replace_ids && current != nullptr) {
    std::shared_ptr<const RowIndex> index = current->Index()->With(changes);
    absl::MutexLock cache(&next->cache_mu_);
    next->index_ = std::move(index);
  }
  if (!status.ok()) {
    if (journal != nullptr) journal->DiscardSegment(handle);
    return status;
  }
  std::shared_ptr<const Collection> replaced;
  if (o.replace) {
    absl::MutexLock lock(&mu_);
    auto it = collections_.find(o.name);
    if (it != collections_.end()) replaced = it->second.current;
  }
  ENGRAM_RETURN_IF_ERROR(PublishLocked(next, handle, journal != nullptr));
  if (replaced != nullptr && options_.observer != nullptr) {
    options_.observer->OnDeleted(replaced->uid(), replaced->name());
  }
  // Only the process that made a change compacts after it: replicas that
  // load it would otherwise all race to commit the same compaction.
  if (o.durable) MaybeCompact(*next);
  return std::shared_ptr<const Collection>(std::move(next));
}

absl::Status CollectionStore::SetDead(Collection* next,
                                      const std::vector<uint64_t>& dead) {
  next->dead_ = nullptr;
  next->dead_count_ = 0;
  next->killed_.clear();
  if (dead.empty()) return absl::OkStatus();
  auto words = std::make_shared<std::vector<uint64_t>>((next->rows_ + 63) / 64);
  uint64_t count = 0;
  for (uint64_t row : dead) {
    if (row >= next->rows_) {
      return absl::DataLossError(
          absl::StrCat("collection \"", next->name_, "\": a stored dead row (",
                       row, ") is past its ", next->rows_, " rows"));
    }
    uint64_t& word = (*words)[row >> 6];
    const uint64_t bit = uint64_t{1} << (row & 63);
    count += (word & bit) == 0;
    word |= bit;
  }
  next->dead_ = std::move(words);
  next->dead_count_ = count;
  return absl::OkStatus();
}

absl::Status CollectionStore::KillRows(Collection* next,
                                       std::vector<uint64_t> rows) {
  std::sort(rows.begin(), rows.end());
  rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
  const size_t words = (next->rows_ + 63) / 64;
  if (rows.empty()) {
    // Appended rows are live: the bitmap only has to cover them.
    if (next->dead_ != nullptr && next->dead_->size() < words) {
      auto grown = std::make_shared<std::vector<uint64_t>>(*next->dead_);
      grown->resize(words);
      next->dead_ = std::move(grown);
    }
    next->killed_.clear();
    return absl::OkStatus();
  }
  auto grown = next->dead_ == nullptr
                   ? std::make_shared<std::vector<uint64_t>>(words)
                   : std::make_shared<std::vector<uint64_t>>(*next->dead_);
  grown->resize(words);
  for (uint64_t row : rows) {
    if (row >= next->rows_) {
      return absl::InternalError(
          absl::StrCat("killing row ", row, " of ", next->rows_));
    }
    uint64_t& word = (*grown)[row >> 6];
    const uint64_t bit = uint64_t{1} << (row & 63);
    if ((word & bit) != 0) {
      return absl::InternalError(absl::StrCat(
          "row ", row, " of collection \"", next->name_, "\" is dead already"));
    }
    word |= bit;
  }
  next->dead_count_ += rows.size();
  next->dead_ = std::move(grown);
  next->killed_ = std::move(rows);
  return absl::OkStatus();
}

absl::Status CollectionStore::PublishLocked(std::shared_ptr<Collection> next,
                                            const std::string& handle,
                                            bool journaled) {
  // commit_mu_ keeps every other commit and delete out until `next` is
  // published, so the version it was given is still the next one.
  if (journaled) {
    if (absl::Status status = options_.journal->Commit(*next, handle);
        !status.ok()) {
      options_.journal->DiscardSegment(handle);
      return status;
    }
  }
  {
    absl::MutexLock lock(&mu_);
    // For a create, the name was reserved in creating_ so nothing can be
    // in collections_ under it, unless the create replaces it.
    lost_.erase(next->name_);
    Entry& entry = collections_[next->name_];
    entry.current = next;
    entry.behind = absl::OkStatus();
    UpdateGaugesLocked();
  }
  if (options_.observer != nullptr) options_.observer->OnCommitted(next);
  return absl::OkStatus();
}

absl::StatusOr<DeleteRowsResult> CollectionStore::DeleteRows(
    absl::string_view name, absl::Span<const uint64_t> ids,
    absl::string_view idempotency_key, uint64_t expected_version) {
  if (ids.empty() || ids.size() > kMaxDeleteIds) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ids has ", ids.size(), " entries, must be 1 to ", kMaxDeleteIds));
  }
  DeleteRowsResult result;
  absl::MutexLock commit(&commit_mu_);
  // commit_mu_ keeps it the current version until this call publishes.
  ENGRAM_ASSIGN_OR_RETURN(std::shared_ptr<const Collection> current, Get(name));
  if (!idempotency_key.empty() && current->Committed(idempotency_key)) {
    result.collection = current;
    result.replayed = true;
    return result;
  }
  if (expected_version != 0 && expected_version != current->version()) {
    return absl::AbortedError(absl::StrCat(
        "expected_version is ", expected_version, " but collection \"", name,
        "\" is at version ", current->version()));
  }
  if (!current->ids_everywhere()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "collection \"", name,
        "\" has rows uploaded without ids; rows can only be deleted by id in "
        "a collection whose every row has one"));
  }
  RowIndex::Changes changes;
  std::vector<uint64_t> killed;
  absl::flat_hash_set<uint64_t> seen;
  std::shared_ptr<const RowIndex> index = current->Index();
  for (uint64_t id : ids) {
    if (!seen.insert(id).second) continue;
    RowIndex::Rows rows = index->Find(id);
    if (rows.empty()) {
      result.not_found.push_back(id);
      continue;
    }
    killed.insert(killed.end(), rows.begin(), rows.end());
    changes[id] = RowIndex::Rows();
  }
  if (killed.empty()) {
    result.collection = current;
    return result;
  }
  std::shared_ptr<Collection> next = Successor(*current);
  if (!idempotency_key.empty()) {
    AddCommittedKey(next.get(), std::string(idempotency_key));
  }
  ENGRAM_RETURN_IF_ERROR(KillRows(next.get(), std::move(killed)));
  {
    std::shared_ptr<const RowIndex> carried = index->With(changes);
    absl::MutexLock cache(&next->cache_mu_);
    next->index_ = std::move(carried);
  }
  result.deleted = next->killed_.size();
  ENGRAM_RETURN_IF_ERROR(PublishLocked(next, "", options_.journal != nullptr));
  MaybeCompact(*next);
  result.collection = std::move(next);
  return result;
}

absl::StatusOr<std::shared_ptr<const Collection>>
CollectionStore::RestoreDeletions(absl::string_view name, uint64_t version,
                                  const std::vector<uint64_t>& dead,
                                  const std::vector<CommittedKey>& keys) {
  absl::MutexLock commit(&commit_mu_);
  std::shared_ptr<const Collection> current;
  {
    absl::MutexLock lock(&mu_);
    auto it = collections_.find(name);
    if (it == collections_.end()) {
      return absl::NotFoundError(
          absl::StrCat("collection \"", name, "\" does not exist"));
    }
    current = it->second.current;
  }
  if (version <= current->version()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "collection \"", name, "\" is at version ", current->version(),
        ", not older than the stored version ", version));
  }
  std::shared_ptr<Collection> next = Successor(*current);
  next->version_ = version;
  next->committed_keys_ =
      std::make_shared<const std::vector<CommittedKey>>(keys);
  ENGRAM_RETURN_IF_ERROR(SetDead(next.get(), dead));
  ENGRAM_RETURN_IF_ERROR(PublishLocked(next, "", /*journaled=*/false));
  return std::shared_ptr<const Collection>(std::move(next));
}

std::shared_ptr<Collection> CollectionStore::Successor(
    const Collection& current) {
  std::shared_ptr<Collection> next(new Collection());
  next->name_ = current.name_;
  next->dimension_ = current.dimension_;
  next->metadata_ = current.metadata_;
  next->uid_ = current.uid_;
  next->version_ = current.version_ + 1;
  next->source_ = current.source_;
  next->segments_ = current.segments_;
  next->rows_ = current.rows_;
  next->bytes_ = current.bytes_;
  next->committed_keys_ = current.committed_keys_;
  next->dead_ = current.dead_;
  next->dead_count_ = current.dead_count_;
  return next;
}

void CollectionStore::AddCommittedKey(Collection* next, std::string key) {
  auto keys =
      std::make_shared<std::vector<CommittedKey>>(*next->committed_keys_);
  keys->push_back({std::move(key), next->version_});
  if (keys->size() > kMaxCommittedKeys) {
    keys->erase(keys->begin(),
                keys->begin() + (keys->size() - kMaxCommittedKeys));
  }
  next->committed_keys_ = std::move(keys);
}

absl::StatusOr<std::shared_ptr<const Collection>> CollectionStore::Compact(
    absl::string_view name) {
  ENGRAM_ASSIGN_OR_RETURN(std::shared_ptr<const Collection> current, Get(name));
  if (current->dead_rows() == 0) return current;
  // The copy is made without any lock: searches and commits go on.
  const uint32_t dimension = current->dimension();
  const uint64_t live = current->live_rows();
  const bool with_ids = current->has_ids();
  bool with_labels = false;
  for (const auto& segment : current->segments()) {
    with_labels = with_labels || segment->labels() != nullptr;
  }
  std::shared_ptr<Segment> segment(new Segment());
  if (live > 0) {
    ENGRAM_ASSIGN_OR_RETURN(
        segment->reservation_,
        options_.budget->Reserve(
            live * BytesPerRow(dimension, with_ids),
            absl::StrCat("compaction of collection \"", name, "\" (", live,
                         " live rows)")));
    try {
      segment->data_ = kernels::LargeBuffer<float>(live * dimension);
      segment->norms_ = kernels::LargeBuffer<float>(live);
      if (with_ids) segment->ids_ = kernels::LargeBuffer<uint64_t>(live);
    } catch (const std::bad_alloc&) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "cannot allocate the compaction of collection \"", name, "\""));
    }
  }
  std::vector<RowLabels> labels;
  if (with_labels) labels.resize(live);
  uint64_t out = 0;
  for (const auto& source : current->segments()) {
    for (uint64_t i = 0; i < source->rows(); ++i) {
      if (!current->IsLive(source->first_row() + i)) continue;
      std::memcpy(segment->data_.data() + out * dimension,
                  source->vectors().row(i), dimension * sizeof(float));
      segment->norms_.data()[out] = source->norms()[i];
      if (with_ids) segment->ids_.data()[out] = source->IdOf(i);
      if (with_labels && source->labels() != nullptr) {
        labels[out] = source->labels()->LabelsOf(i);
      }
      ++out;
    }
  }
  segment->vectors_ = kernels::MatrixView{segment->data_.data(),
                                          static_cast<size_t>(live), dimension};
  segment->ids_view_ =
      absl::MakeConstSpan(segment->ids_.data(), segment->ids_.size());
  if (with_labels) {
    ENGRAM_ASSIGN_OR_RETURN(segment->labels_, SegmentLabels::Build(labels));
    ENGRAM_ASSIGN_OR_RETURN(
        segment->labels_reservation_,
        options_.budget->Reserve(
            segment->labels_->bytes(),
            absl::StrCat("labels of the compaction of collection \"", name,
                         "\"")));
  }
  segment->id_ = NewResidentId();
  std::string handle;
  if (options_.journal != nullptr && live > 0) {
    ENGRAM_ASSIGN_OR_RETURN(handle,
                            options_.journal->WriteSegment(name, *segment));
  }
  absl::MutexLock commit(&commit_mu_);
  std::shared_ptr<const Collection> now;
  {
    absl::MutexLock lock(&mu_);
    auto it = collections_.find(name);
    if (it != collections_.end()) now = it->second.current;
  }
  if (now != current) {
    if (options_.journal != nullptr) options_.journal->DiscardSegment(handle);
    return absl::AbortedError(absl::StrCat(
        "collection \"", name, "\" changed while it was compacted"));
  }
  std::shared_ptr<Collection> next = Successor(*current);
  next->segments_.clear();
  next->rows_ = live;
  next->bytes_ = segment->bytes();
  next->dead_ = nullptr;
  next->dead_count_ = 0;
  next->rewritten_ = true;
  if (live > 0) next->segments_.push_back(std::move(segment));
  ENGRAM_RETURN_IF_ERROR(
      PublishLocked(next, handle, options_.journal != nullptr));
  return std::shared_ptr<const Collection>(std::move(next));
}

void CollectionStore::MaybeCompact(const Collection& c) {
  if (!options_.compact_in_background || c.dead_rows() == 0) return;
  if (c.dead_rows() < options_.compact_min_dead_rows && c.live_rows() > 0) {
    return;
  }
  if (static_cast<double>(c.dead_rows()) <
      options_.compact_dead_share * static_cast<double>(c.rows())) {
    return;
  }
  absl::MutexLock lock(&compact_mu_);
  if (std::find(compact_queue_.begin(), compact_queue_.end(), c.name()) ==
      compact_queue_.end()) {
    compact_queue_.push_back(c.name());
  }
}

void CollectionStore::CompactLoop() {
  while (true) {
    std::string name;
    {
      absl::MutexLock lock(&compact_mu_);
      compact_mu_.Await(absl::Condition(
          +[](CollectionStore* s)
               ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->compact_mu_) {
                 return s->stopping_ || !s->compact_queue_.empty();
               },
          this));
      if (stopping_) return;
      name = compact_queue_.front();
      compact_queue_.erase(compact_queue_.begin());
      compacting_ = true;
    }
    absl::StatusOr<std::shared_ptr<const Collection>> done = Compact(name);
    absl::MutexLock lock(&compact_mu_);
    compacting_ = false;
    // A collection deleted meanwhile needs nothing; one changed meanwhile
    // is queued again by the commit that changed it, if it still needs it.
    if (done.ok()) {
      ++compactions_;
      if (options_.metrics != nullptr) options_.metrics->OnCompaction(true);
    } else if (!absl::IsNotFound(done.status()) &&
               !absl::IsAborted(done.status())) {
      compact_error_ = done.status();
      if (options_.metrics != nullptr) options_.metrics->OnCompaction(false);
    }
  }
}

uint64_t CollectionStore::compactions() const {
  absl::MutexLock lock(&compact_mu_);
  return compactions_;
}

absl::Status CollectionStore::last_compaction_error() const {
  absl::MutexLock lock(&compact_mu_);
  return compact_error_;
}

void CollectionStore::WaitForCompactions() const {
  absl::MutexLock lock(&compact_mu_);
  compact_mu_.Await(absl::Condition(
      +[](const CollectionStore* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(
           s->compact_mu_) {
        return s->stopping_ || (s->compact_queue_.empty() && !s->compacting_);
      },
      this));
}

void CollectionStore::Unstage(const CollectionUpload& upload) {
  absl::MutexLock lock(&mu_);
  if (upload.options_.create) {
    creating_.erase(upload.options_.name);
    return;
  }
  auto it = collections_.find(upload.options_.name);
  if (it != collections_.end() &&
      it->second.current->uid() == upload.target_uid_) {
    --it->second.appends_staged;
  }
}

absl::Status CollectionStore::Delete(absl::string_view name) {
  return Remove(name, /*journaled=*/true);
}

absl::Status CollectionStore::Evict(absl::string_view name) {
  return Remove(name, /*journaled=*/false);
}

void CollectionStore::SetBehind(absl::string_view name,
                                const absl::Status& why) {
  absl::MutexLock lock(&mu_);
  auto it = collections_.find(name);
  if (it != collections_.end()) it->second.behind = why;
}

absl::StatusOr<std::shared_ptr<const Collection>> CollectionStore::GetAtLeast(
    absl::string_view name, uint64_t min_version,
    absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto caught_up = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!LostLocked(name).ok()) return true;
    auto it = collections_.find(name);
    return it != collections_.end() &&
           it->second.current->version() >= min_version;
  };
  if (min_version > 0 && timeout > absl::ZeroDuration()) {
    mu_.AwaitWithTimeout(absl::Condition(&caught_up), timeout);
  }
  ENGRAM_RETURN_IF_ERROR(LostLocked(name));
  auto it = collections_.find(name);
  if (it == collections_.end()) {
    return absl::NotFoundError(
        absl::StrCat("collection \"", name, "\" does not exist",
                     min_version > 0 ? " on this replica" : ""));
  }
  const uint64_t version = it->second.current->version();
  if (version < min_version) {
    return absl::UnavailableError(
        absl::StrCat("min_version: collection \"", name, "\" is at version ",
                     version, " on this replica, min_version is ", min_version,
                     "; another replica may have it"));
  }
  return it->second.current;
}

absl::Status CollectionStore::Remove(absl::string_view name, bool journaled) {
  absl::MutexLock commit(&commit_mu_);
  uint64_t uid = 0;
  {
    absl::MutexLock lock(&mu_);
    auto it = collections_.find(name);
    if (it == collections_.end() && lost_.count(name) == 0) {
      return absl::NotFoundError(
          absl::StrCat("collection \"", name, "\" does not exist"));
    }
    if (it != collections_.end()) uid = it->second.current->uid();
  }
  if (journaled && options_.journal != nullptr) {
    ENGRAM_RETURN_IF_ERROR(options_.journal->Delete(name));
  }
  {
    absl::MutexLock lock(&mu_);
    lost_.erase(std::string(name));
    if (uid != 0) collections_.erase(collections_.find(name));
    UpdateGaugesLocked();
  }
  if (uid != 0 && options_.observer != nullptr) {
    options_.observer->OnDeleted(uid, std::string(name));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const Collection>> CollectionStore::Get(
    absl::string_view name) const {
  absl::MutexLock lock(&mu_);
  ENGRAM_RETURN_IF_ERROR(LostLocked(name));
  auto it = collections_.find(name);
  if (it == collections_.end()) {
    return absl::NotFoundError(
        absl::StrCat("collection \"", name, "\" does not exist"));
  }
  return it->second.current;
}

std::shared_ptr<const Collection> CollectionStore::FindCommitted(
    absl::string_view name, absl::string_view key) const {
  if (key.empty()) return nullptr;
  absl::MutexLock lock(&mu_);
  auto it = collections_.find(name);
  if (it == collections_.end() || !it->second.current->Committed(key)) {
    return nullptr;
  }
  return it->second.current;
}

CollectionInfo DescribeVersion(const Collection& c) {
  CollectionInfo info;
  info.name = c.name();
  info.dimension = c.dimension();
  info.rows = c.live_rows();
  info.tombstones = c.dead_rows();
  info.bytes = c.bytes();
  info.metadata = c.metadata();
  info.uid = c.uid();
  info.version = c.version();
  info.segments = c.segments().size();
  info.has_ids = c.has_ids();
  info.source = c.source();
  return info;
}

CollectionInfo CollectionStore::InfoOf(const Entry& entry) const {
  CollectionInfo info = DescribeVersion(*entry.current);
  info.load_state = entry.appends_staged > 0 ? "appending" : "ready";
  if (!entry.behind.ok()) {
    info.load_state = "behind";
    info.error = std::string(entry.behind.message());
  }
  return info;
}

absl::StatusOr<CollectionInfo> CollectionStore::Describe(
    absl::string_view name) const {
  absl::MutexLock lock(&mu_);
  ENGRAM_RETURN_IF_ERROR(LostLocked(name));
  auto it = collections_.find(name);
  if (it == collections_.end()) {
    return absl::NotFoundError(
        absl::StrCat("collection \"", name, "\" does not exist"));
  }
  return InfoOf(it->second);
}

std::vector<CollectionInfo> CollectionStore::List() const {
  absl::MutexLock lock(&mu_);
  std::vector<CollectionInfo> out;
  out.reserve(collections_.size());
  for (const auto& [name, entry] : collections_) out.push_back(InfoOf(entry));
  for (const auto& [name, why] : lost_) {
    CollectionInfo info;
    info.name = name;
    info.load_state = "lost";
    info.error = std::string(why.message());
    out.push_back(std::move(info));
  }
  std::sort(out.begin(), out.end(),
            [](const CollectionInfo& a, const CollectionInfo& b) {
              return a.name < b.name;
            });
  return out;
}

void CollectionStore::UpdateGaugesLocked() {
  if (options_.metrics == nullptr) return;
  uint64_t bytes = 0;
  uint64_t tombstones = 0;
  for (const auto& [name, entry] : collections_) {
    bytes += entry.current->bytes();
    tombstones += entry.current->dead_rows();
  }
  options_.metrics->SetCollections(collections_.size(), bytes);
  options_.metrics->SetTombstones(tombstones);
}

}  // namespace engram::collections
