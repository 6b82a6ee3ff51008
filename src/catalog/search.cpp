#include "catalog/search.h"

#include <xapian.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <map>
#include <string_view>
#include <unordered_map>

#include "common/format.h"
#include "fmt/format.h"

namespace emporium::catalog {
namespace {
using search_internal::FacetOrdinals;

// Slots 0-2 hold one facet each in indexes written before the facets moved into one slot;
// documents indexed since carry all three in kFacetsSlot (one value read per match instead of
// three, which was two thirds of the facet cost). FacetSpy reads either form.
constexpr Xapian::valueno kBrandSlot = 0;
constexpr Xapian::valueno kCategorySlot = 1;
constexpr Xapian::valueno kPriceBucketSlot = 2;
constexpr Xapian::valueno kFacetsSlot = 3;
// A hit's summary (JSON). Indexes written before it moved here keep it in the document data;
// the data tag is zlib-compressed per document by glass, a value is not.
constexpr Xapian::valueno kSummarySlot = 4;
constexpr Xapian::termcount kTitleWeight = 3;
constexpr Xapian::termcount kBrandWeight = 2;
constexpr Xapian::termcount kDescriptionWeight = 1;
constexpr int64_t kRebuildCommitEvery = 20'000;
constexpr const char* kSeqMetadataKey = "last_update_seq";
// The last word of a query is a prefix (type-ahead): it expands to at most this many terms, the
// most frequent ones, so a one-letter prefix cannot open thousands of posting lists.
constexpr Xapian::termcount kPrefixExpansionMax = 50;

std::string Lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

// The facets of a document in one value: each field as its decimal length, ':' and its bytes
// (any byte may occur in a brand or category).
std::string EncodeFacets(std::string_view brand, std::string_view category,
                         std::string_view price_bucket) {
  std::string out;
  for (std::string_view field : {brand, category, price_bucket}) {
    out += std::to_string(field.size());
    out += ':';
    out.append(field.data(), field.size());
  }
  return out;
}

// Splits an EncodeFacets value into its kFacetCount fields; false if it is malformed.
constexpr size_t kFacetCount = 3;
bool DecodeFacets(std::string_view value, std::array<std::string_view, kFacetCount>& fields) {
  for (std::string_view& field : fields) {
    const size_t colon = value.find(':');
    if (colon == std::string_view::npos || colon == 0 || colon > 9) return false;
    size_t length = 0;
    for (char digit : value.substr(0, colon)) {
      if (digit < '0' || digit > '9') return false;
      length = length * 10 + static_cast<size_t>(digit - '0');
    }
    value.remove_prefix(colon + 1);
    if (length > value.size()) return false;
    field = value.substr(0, length);
    value.remove_prefix(length);
  }
  return value.empty();
}

// Every document's facets as ordinals, indexed by docid, for one revision of the index: counting
// a match is three array increments instead of a B-tree lookup of its value. Ordinal 0 is an
// empty value, kFacetOrdinalUnknown a docid without a readable facets value (deleted, or a
// damaged value): the spy reads that document from the index instead. The docids are split
// into fixed-size chunks held by shared_ptr and the value tables are shared too, so the next
// revision's column (derived by the writer from this one plus its commit's changes) copies only
// the chunks and tables that commit touches; the rest is shared with the revisions before it.
constexpr uint32_t kFacetOrdinalUnknown = UINT32_MAX;
constexpr Xapian::docid kFacetChunkDocids = 4096;  // 48 KiB per chunk
using FacetOrdinalTriple = std::array<uint32_t, kFacetCount>;
using FacetChunk = std::array<FacetOrdinalTriple, kFacetChunkDocids>;
using FacetValues = std::vector<std::string>;  // ordinal - 1 -> value

std::shared_ptr<FacetChunk> NewFacetChunk() {
  auto chunk = std::make_shared<FacetChunk>();
  chunk->fill({kFacetOrdinalUnknown, kFacetOrdinalUnknown, kFacetOrdinalUnknown});
  return chunk;
}

}  // namespace
struct search_internal::FacetOrdinals {
  std::string uuid;  // a rebuilt (overwritten) index starts its revisions again
  Xapian::rev revision = 0;
  Xapian::docid docid_end = 0;  // docids below it have an entry (chunks * kFacetChunkDocids)
  std::vector<std::shared_ptr<const FacetChunk>> chunks;
  std::array<std::shared_ptr<const FacetValues>, kFacetCount> values;

  // The ordinals of `docid`, or null when the column does not know its facets.
  const FacetOrdinalTriple* Find(Xapian::docid docid) const {
    if (docid >= docid_end) return nullptr;
    const FacetOrdinalTriple& ordinals =
        (*chunks[docid / kFacetChunkDocids])[docid % kFacetChunkDocids];
    return ordinals[0] == kFacetOrdinalUnknown ? nullptr : &ordinals;
  }
};
namespace {

// Reads every document's facets value of `database` (one pass over the value stream: ~10 ms
// for 100,000 documents). False if the index is not wholly in the one-slot layout or has more
// docids than kSearchFacetColumnDocidsMax; the caller then counts from the index's values.
bool BuildFacetOrdinals(const Xapian::Database& database, FacetOrdinals& out) {
  if (database.get_value_freq(kFacetsSlot) != database.get_doccount()) return false;
  const Xapian::docid last_docid = database.get_lastdocid();
  if (last_docid >= kSearchFacetColumnDocidsMax) return false;
  out.uuid = database.get_uuid();
  out.revision = database.get_revision();
  const size_t chunk_count = static_cast<size_t>(last_docid / kFacetChunkDocids) + 1;
  std::vector<std::shared_ptr<FacetChunk>> chunks;
  chunks.reserve(chunk_count);
  for (size_t i = 0; i < chunk_count; ++i) chunks.push_back(NewFacetChunk());
  std::array<std::shared_ptr<FacetValues>, kFacetCount> values;
  for (auto& table : values) table = std::make_shared<FacetValues>();
  std::array<std::unordered_map<std::string, uint32_t>, kFacetCount> ordinal_of;
  std::array<std::string_view, kFacetCount> fields;
  for (auto it = database.valuestream_begin(kFacetsSlot);
       it != database.valuestream_end(kFacetsSlot); ++it) {
    const std::string value = *it;
    if (!DecodeFacets(value, fields)) continue;
    const Xapian::docid docid = it.get_docid();
    FacetOrdinalTriple& ordinals = (*chunks[docid / kFacetChunkDocids])[docid % kFacetChunkDocids];
    for (size_t i = 0; i < kFacetCount; ++i) {
      if (fields[i].empty()) {
        ordinals[i] = 0;
        continue;
      }
      auto [entry, inserted] = ordinal_of[i].try_emplace(std::string(fields[i]), 0);
      if (inserted) {
        values[i]->emplace_back(fields[i]);
        entry->second = static_cast<uint32_t>(values[i]->size());
      }
      ordinals[i] = entry->second;
    }
  }
  out.docid_end = static_cast<Xapian::docid>(chunk_count * kFacetChunkDocids);
  out.chunks.assign(chunks.begin(), chunks.end());
  for (size_t i = 0; i < kFacetCount; ++i) out.values[i] = std::move(values[i]);
  return true;
}

// A document's three facet values (brand, category, price bucket) as the index stores them.
std::array<std::string, kFacetCount> FacetFields(const Product& product) {
  std::optional<Money> usd = LowestPrice(product, "USD");
  return {product.brand, product.category, usd ? PriceBucket(usd->amount_minor()) : std::string()};
}

// The writer's side of the facet column: the column of its last commit and what the pending
// changes do to it. Owned by the processor thread (the writer); what it publishes is immutable.
// A commit touching few documents costs a copy of the chunks it touches (48 KiB each) and of
// the chunk pointers (8 bytes per 4,096 docids), not a pass over the index.
class FacetColumnTracker {
 public:
  bool tracking() const { return base_ != nullptr; }
  const std::shared_ptr<const FacetOrdinals>& base() const { return base_; }

  // Follows `column` (the column of the writer's last commit) from now on.
  void Adopt(std::shared_ptr<const FacetOrdinals> column) {
    Stop();
    for (size_t i = 0; i < kFacetCount; ++i) {
      const FacetValues& values = *column->values[i];
      ordinal_of_[i].reserve(values.size());
      for (size_t ordinal = 0; ordinal < values.size(); ++ordinal) {
        ordinal_of_[i].emplace(values[ordinal], static_cast<uint32_t>(ordinal + 1));
      }
      adopted_values_[i] = values.size();
    }
    base_ = std::move(column);
  }
  // Forgets the column (a failed write, a rebuild): searches build one again, the writer
  // adopts it.
  void Stop() {
    base_ = nullptr;
    changes_.clear();
    for (auto& map : ordinal_of_) map.clear();
  }

  // Records what the pending commit does to `docid`: new facets, or (null) deleted.
  void Set(Xapian::docid docid, std::array<std::string, kFacetCount> fields) {
    if (tracking()) changes_.push_back(Change{docid, false, std::move(fields)});
  }
  void Delete(Xapian::docid docid) {
    if (tracking()) changes_.push_back(Change{docid, true, {}});
  }

  // The column of `revision`, committed with the recorded changes; it becomes the base. Null
  // (and tracking stops) if the column would pass its bounds: too many docids, or value tables
  // grown well past their size at adoption (values no longer used are only dropped by a full
  // build, which the next search then makes).
  std::shared_ptr<const FacetOrdinals> Commit(Xapian::rev revision) {
    if (!tracking()) return nullptr;
    if (revision <= base_->revision) {
      Stop();  // not a new revision; cannot happen with a commit that wrote our metadata
      return nullptr;
    }
    auto next = std::make_shared<FacetOrdinals>();
    next->uuid = base_->uuid;
    next->revision = revision;
    next->docid_end = base_->docid_end;
    next->chunks = base_->chunks;
    next->values = base_->values;
    std::vector<std::shared_ptr<FacetChunk>> copied(next->chunks.size());
    std::array<std::shared_ptr<FacetValues>, kFacetCount> grown;
    for (Change& change : changes_) {
      if (change.docid >= kSearchFacetColumnDocidsMax) {
        Stop();
        return nullptr;
      }
      const size_t chunk = change.docid / kFacetChunkDocids;
      if (chunk >= next->chunks.size()) {
        if (change.deleted) continue;  // never had an entry
        while (next->chunks.size() <= chunk) {
          copied.push_back(NewFacetChunk());
          next->chunks.push_back(copied.back());
        }
        next->docid_end = static_cast<Xapian::docid>(next->chunks.size() * kFacetChunkDocids);
      }
      if (copied[chunk] == nullptr) {
        copied[chunk] = std::make_shared<FacetChunk>(*next->chunks[chunk]);
        next->chunks[chunk] = copied[chunk];
      }
      FacetOrdinalTriple& ordinals = (*copied[chunk])[change.docid % kFacetChunkDocids];
      if (change.deleted) {
        ordinals = {kFacetOrdinalUnknown, kFacetOrdinalUnknown, kFacetOrdinalUnknown};
        continue;
      }
      for (size_t i = 0; i < kFacetCount; ++i) {
        std::string& field = change.fields[i];
        if (field.empty()) {
          ordinals[i] = 0;
          continue;
        }
        auto it = ordinal_of_[i].find(field);
        if (it == ordinal_of_[i].end()) {
          if (grown[i] == nullptr) {
            grown[i] = std::make_shared<FacetValues>(*next->values[i]);
            next->values[i] = grown[i];
          }
          grown[i]->push_back(field);
          it = ordinal_of_[i]
                   .emplace(std::move(field), static_cast<uint32_t>(grown[i]->size()))
                   .first;
        }
        ordinals[i] = it->second;
      }
    }
    changes_.clear();
    for (size_t i = 0; i < kFacetCount; ++i) {
      if (next->values[i]->size() > 2 * adopted_values_[i] + kFacetColumnNewValuesMax) {
        Stop();
        return nullptr;
      }
    }
    base_ = next;
    return next;
  }

 private:
  // Values a followed column may gain beyond twice its tables at adoption before it is left to
  // a full build (which keeps only the values in use).
  static constexpr size_t kFacetColumnNewValuesMax = 4096;
  struct Change {
    Xapian::docid docid = 0;
    bool deleted = false;
    std::array<std::string, kFacetCount> fields;
  };
  std::shared_ptr<const FacetOrdinals> base_;
  std::vector<Change> changes_;  // since the last commit, in order
  std::array<std::unordered_map<std::string, uint32_t>, kFacetCount> ordinal_of_;
  std::array<size_t, kFacetCount> adopted_values_{};
};

// Counts brand, category and price bucket of every document the matcher examines: from the
// facet column when there is one for the searched revision, else reading one value per document
// (the three legacy slots for documents indexed before kFacetsSlot).
// Xapian calls it on the searching thread only; it is not shared.
class FacetSpy : public Xapian::MatchSpy {
 public:
  // Which layouts occur in the database, from its value statistics: an index written wholly
  // before kFacetsSlot is read without first trying that slot in every document.
  enum class Layout { kOneSlot, kLegacySlots, kMixed };
  static Layout LayoutOf(const Xapian::Database& database) {
    const Xapian::doccount with_one_slot = database.get_value_freq(kFacetsSlot);
    if (with_one_slot == 0) return Layout::kLegacySlots;
    if (with_one_slot == database.get_doccount()) return Layout::kOneSlot;
    return Layout::kMixed;
  }

  // `column` (may be null) must describe the revision being searched and outlive the spy.
  FacetSpy(Layout layout, const FacetOrdinals* column) : layout_(layout), column_(column) {
    if (column_ == nullptr) return;
    for (size_t i = 0; i < kFacetCount; ++i)
      ordinal_counts_[i].assign(column_->values[i]->size(), 0);
  }

  void operator()(const Xapian::Document& document, double /*weight*/) override {
    ++total_;
    if (column_ != nullptr) {
      if (const FacetOrdinalTriple* ordinals = column_->Find(document.get_docid())) {
        for (size_t i = 0; i < kFacetCount; ++i) {
          if ((*ordinals)[i] != 0) ++ordinal_counts_[i][(*ordinals)[i] - 1];
        }
        return;
      }
    }
    switch (layout_) {
      case Layout::kLegacySlots:
        CountLegacy(document);
        return;
      case Layout::kOneSlot:
      case Layout::kMixed:
        break;
    }
    const std::string value = document.get_value(kFacetsSlot);
    std::array<std::string_view, kFacetCount> fields;
    if (!value.empty() && DecodeFacets(value, fields)) {
      for (size_t i = 0; i < kFacetCount; ++i) Count(i, fields[i]);
      return;
    }
    // An older document (or a damaged value): the one-slot-per-facet form.
    CountLegacy(document);
  }

  int64_t total() const { return total_; }
  // Non-empty values with their counts, largest first, then by value.
  std::vector<FacetCount> Facets(size_t facet) {
    if (column_ != nullptr) {
      // Merged with the documents counted from their values (the map keeps one entry per value).
      for (size_t ordinal = 0; ordinal < ordinal_counts_[facet].size(); ++ordinal) {
        if (ordinal_counts_[facet][ordinal] == 0) continue;
        const std::string& value = (*column_->values[facet])[ordinal];
        auto it = counts_[facet].find(value);
        if (it == counts_[facet].end()) it = counts_[facet].emplace(value, 0).first;
        it->second += ordinal_counts_[facet][ordinal];
        ordinal_counts_[facet][ordinal] = 0;
      }
    }
    std::vector<FacetCount> facets;
    facets.reserve(counts_[facet].size());
    for (const auto& [value, count] : counts_[facet]) facets.push_back(FacetCount{value, count});
    std::sort(facets.begin(), facets.end(), [](const FacetCount& a, const FacetCount& b) {
      return a.count != b.count ? a.count > b.count : a.value < b.value;
    });
    return facets;
  }

 private:
  void CountLegacy(const Xapian::Document& document) {
    const Xapian::valueno legacy_slots[kFacetCount] = {kBrandSlot, kCategorySlot, kPriceBucketSlot};
    for (size_t i = 0; i < kFacetCount; ++i) Count(i, document.get_value(legacy_slots[i]));
  }

  void Count(size_t facet, std::string_view value) {
    if (value.empty()) return;
    auto& counts = counts_[facet];
    auto it = counts.find(value);
    if (it == counts.end()) it = counts.emplace(std::string(value), 0).first;
    ++it->second;
  }

  const Layout layout_;
  const FacetOrdinals* const column_;
  std::array<std::vector<int64_t>, kFacetCount> ordinal_counts_;
  int64_t total_ = 0;
  std::array<std::map<std::string, int64_t, std::less<>>, kFacetCount> counts_;
};

// Terms are indexed without positions: only phrase and NEAR queries would read them, a shop's
// search box parses those as AND (FLAG_NO_POSITIONS), and writing them was a large part of the
// indexer's cost and of the index's size. Indexes written with positions keep working.
// `generator` is the writer's, reused across documents (its stemmer is built once).
Xapian::Document MakeDocument(Xapian::TermGenerator& generator, const Product& product) {
  Xapian::Document document;
  generator.set_document(document);
  generator.index_text_without_positions(product.title, kTitleWeight);
  generator.index_text_without_positions(product.brand, kBrandWeight);
  generator.index_text_without_positions(product.description, kDescriptionWeight);
  document.add_boolean_term("Q" + product.id);
  if (!product.brand.empty()) document.add_boolean_term("XB" + Lower(product.brand));
  for (const std::string& path : CategoryAncestors(product.category)) {
    document.add_boolean_term("XC" + path);
  }
  const std::array<std::string, kFacetCount> facets = FacetFields(product);
  document.add_value(kFacetsSlot, EncodeFacets(facets[0], facets[1], facets[2]));
  std::optional<Money> usd = LowestPrice(product, "USD");
  Json summary = {
      {"id", product.id},       {"handle", product.handle},     {"title", product.title},
      {"brand", product.brand}, {"category", product.category}, {"version", product.version}};
  if (usd) {
    summary["price"] = {{"USD", usd->ToDecimalString()}};
  }
  if (!product.images.empty()) summary["image"] = product.images.front().url;
  document.add_value(kSummarySlot, DumpJson(summary));
  return document;
}

// Runs `query` on `database`, counting facets from `facet_column` if it is not null (it must
// describe the database's revision). Every Xapian object it makes is destroyed before it returns.
SearchResult SearchOn(Xapian::Database& database, const SearchQuery& query,
                      const FacetOrdinals* facet_column) {
  Xapian::QueryParser parser;
  parser.set_stemmer(Xapian::Stem("english"));
  parser.set_stemming_strategy(Xapian::QueryParser::STEM_SOME);
  parser.set_database(database);
  parser.set_default_op(Xapian::Query::OP_AND);
  parser.set_max_expansion(kPrefixExpansionMax, Xapian::Query::WILDCARD_LIMIT_MOST_FREQUENT,
                           Xapian::QueryParser::FLAG_PARTIAL);
  Xapian::Query text_query =
      query.text.empty()
          // A fresh match-all query, not the shared static Xapian::Query::MatchAll, whose
          // reference count is not atomic (Xapian documents it as unsafe across threads).
          ? Xapian::Query(std::string())
          // No positions are indexed: a "quoted phrase" (or NEAR) is answered as AND, the
          // same on an older index that holds positions as on a newer or mixed one.
          : parser.parse_query(query.text, Xapian::QueryParser::FLAG_DEFAULT |
                                               Xapian::QueryParser::FLAG_PARTIAL |
                                               Xapian::QueryParser::FLAG_NO_POSITIONS);
  std::vector<Xapian::Query> filters;
  if (query.brand) filters.emplace_back("XB" + Lower(*query.brand));
  if (query.category) filters.emplace_back("XC" + *query.category);
  Xapian::Query full = text_query;
  if (!filters.empty()) {
    full = Xapian::Query(Xapian::Query::OP_FILTER, full,
                         Xapian::Query(Xapian::Query::OP_AND, filters.begin(), filters.end()));
  }
  Xapian::Enquire enquire(database);
  enquire.set_query(full);
  enquire.set_weighting_scheme(Xapian::BM25Weight());
  FacetSpy facet_spy(FacetSpy::LayoutOf(database), facet_column);
  enquire.add_matchspy(&facet_spy);
  // check_at_least bounds the work: up to kSearchExactMatchesMax matches the total and
  // the facets are exact; beyond, they are scaled up from those best matches.
  Xapian::MSet mset = enquire.get_mset(static_cast<Xapian::doccount>(query.offset),
                                       static_cast<Xapian::doccount>(query.limit),
                                       static_cast<Xapian::doccount>(kSearchExactMatchesMax));
  SearchResult result;
  result.total = mset.get_matches_estimated();
  result.exact = mset.get_matches_lower_bound() == mset.get_matches_upper_bound();
  for (auto it = mset.begin(); it != mset.end(); ++it) {
    SearchHit hit;
    const Xapian::Document document = it.get_document();
    std::string text = document.get_value(kSummarySlot);
    if (text.empty()) text = document.get_data();  // indexed before kSummarySlot
    absl::StatusOr<Json> summary = ParseJson(text);
    hit.summary = summary.ok() ? *summary : Json::object();
    hit.product_id = hit.summary.value("id", std::string());
    hit.score = it.get_weight();
    result.hits.push_back(std::move(hit));
  }
  result.brands = facet_spy.Facets(0);
  result.categories = facet_spy.Facets(1);
  result.price_buckets = facet_spy.Facets(2);
  if (!result.exact && facet_spy.total() > 0) {
    const double scale = static_cast<double>(result.total) / static_cast<double>(facet_spy.total());
    for (auto* facets : {&result.brands, &result.categories, &result.price_buckets}) {
      for (FacetCount& facet : *facets) {
        facet.count = std::llround(static_cast<double>(facet.count) * scale);
      }
    }
  }
  return result;
}

}  // namespace

std::string PriceBucket(int64_t usd_minor) {
  if (usd_minor < 2'500) return "0-25";
  if (usd_minor < 5'000) return "25-50";
  if (usd_minor < 10'000) return "50-100";
  if (usd_minor < 25'000) return "100-250";
  return "250+";
}

struct SearchIndex::Writer {
  explicit Writer(Xapian::WritableDatabase opened) : database(std::move(opened)) {
    generator.set_stemmer(Xapian::Stem("english"));
  }
  Xapian::WritableDatabase database;
  Xapian::TermGenerator generator;
  FacetColumnTracker facets;
  // False while the database may hold changes of a failed Apply that the tracker did not
  // record: the column of the next commit cannot be derived, only adopted after it.
  bool clean = true;
};

struct SearchIndex::Reader {
  Xapian::Database database;
  uint64_t generation = 0;
};

SearchIndex::SearchIndex(std::string directory) : directory_(std::move(directory)) {}

SearchIndex::~SearchIndex() {
  try {
    if (writer_) writer_->database.close();
  } catch (const Xapian::Error&) {
    // Closing can only fail on I/O errors; the last commit is what counts.
  }
}

absl::Status SearchIndex::Open() {
  try {
    std::filesystem::create_directories(std::filesystem::path(directory_).parent_path());
    writer_ =
        std::make_unique<Writer>(Xapian::WritableDatabase(directory_, Xapian::DB_CREATE_OR_OPEN));
    const std::string seq = writer_->database.get_metadata(kSeqMetadataKey);
    last_update_seq_.store(seq.empty() ? 0 : std::stoll(seq));
    document_count_.store(writer_->database.get_doccount());
    {
      std::lock_guard lock(facet_mutex_);
      index_uuid_ = writer_->database.get_uuid();
    }
    generation_.fetch_add(1);
    state_.store(State::kReady);
    return absl::OkStatus();
  } catch (const Xapian::Error& error) {
    state_.store(State::kUnavailable);
    return absl::UnavailableError(
        fmt::format("search index {}: {}", directory_, error.get_description()));
  } catch (const std::exception& error) {
    state_.store(State::kUnavailable);
    return absl::UnavailableError(fmt::format("search index {}: {}", directory_, error.what()));
  }
}

absl::Status SearchIndex::IndexProducts(const std::vector<StoredProduct>& products) {
  for (const StoredProduct& stored : products) {
    const std::string id_term = "Q" + stored.product.id;
    FacetColumnTracker& facets = writer_->facets;
    if (stored.product.status == ProductStatus::kActive) {
      // The docid it replaces (or a new one); other documents with the term (there are none
      // in an index this class wrote) are deleted and keep a stale, never-matched entry.
      const Xapian::docid docid = writer_->database.replace_document(
          id_term, MakeDocument(writer_->generator, stored.product));
      facets.Set(docid, FacetFields(stored.product));
    } else {
      if (facets.tracking()) {
        for (auto it = writer_->database.postlist_begin(id_term);
             it != writer_->database.postlist_end(id_term); ++it) {
          facets.Delete(*it);
        }
      }
      writer_->database.delete_document(id_term);
    }
  }
  return absl::OkStatus();
}

absl::Status SearchIndex::Apply(const std::vector<StoredProduct>& products,
                                int64_t last_update_seq) {
  if (!writer_) return absl::UnavailableError("search index is not open");
  FacetColumnTracker& facets = writer_->facets;
  try {
    if (!facets.tracking() && writer_->clean) {
      // Follow the column a search built for the revision the writer is at, if there is one.
      std::shared_ptr<const FacetOrdinals> published;
      {
        std::lock_guard lock(facet_mutex_);
        published = facet_column_;
      }
      if (published != nullptr && published->uuid == writer_->database.get_uuid() &&
          published->revision == writer_->database.get_revision()) {
        facets.Adopt(std::move(published));
      }
    }
    writer_->clean = false;
    // Glass reuses the blocks one commit freed for the writes after the next: a search still
    // reading the revision before last could read a block rewritten under it. Glass notices
    // most such reads (DatabaseModifiedError, which Search retries) but not every one (an
    // AddressSanitizer run caught an over-read in Document::get_value while commits ran). So
    // the writer starts changing the index only once every search that began before its last
    // commit has finished; later ones read that commit's revision, which this batch leaves alone.
    WaitForSearchesBefore(generation_.load());
    if (absl::Status status = IndexProducts(products); !status.ok()) {
      facets.Stop();
      return status;
    }
    writer_->database.set_metadata(kSeqMetadataKey, std::to_string(last_update_seq));
    // From the commit until the column is published, a search on the new revision counts
    // from the values rather than building a column of its own.
    facet_column_coming_.store(facets.tracking());
    writer_->database.commit();
    writer_->clean = true;
    // Published after the commit, tagged with the revision it committed: a reader at another
    // revision (older, or a retried commit's) never takes it.
    if (std::shared_ptr<const FacetOrdinals> next =
            facets.Commit(writer_->database.get_revision())) {
      std::lock_guard lock(facet_mutex_);
      facet_column_ = std::move(next);
    }
    facet_column_coming_.store(false);
    last_update_seq_.store(last_update_seq);
    document_count_.store(writer_->database.get_doccount());
    generation_.fetch_add(1);
    return absl::OkStatus();
  } catch (const Xapian::Error& error) {
    facets.Stop();
    facet_column_coming_.store(false);
    return absl::UnavailableError(fmt::format("search index: {}", error.get_description()));
  }
}

absl::Status SearchIndex::Rebuild(
    const std::function<absl::StatusOr<std::vector<StoredProduct>>(int64_t)>& next_page) {
  state_.store(State::kRebuilding);
  {
    std::lock_guard lock(facet_mutex_);
    facet_column_ = nullptr;
  }
  try {
    if (writer_) writer_->database.close();
    writer_ = std::make_unique<Writer>(
        Xapian::WritableDatabase(directory_, Xapian::DB_CREATE_OR_OVERWRITE));
    {
      std::lock_guard lock(facet_mutex_);
      index_uuid_ = writer_->database.get_uuid();
    }
    int64_t after_seq = 0;
    int64_t since_commit = 0;
    while (true) {
      absl::StatusOr<std::vector<StoredProduct>> page = next_page(after_seq);
      if (!page.ok()) {
        state_.store(State::kUnavailable);
        return page.status();
      }
      if (page->empty()) break;
      if (absl::Status status = IndexProducts(*page); !status.ok()) return status;
      after_seq = page->back().update_seq;
      since_commit += static_cast<int64_t>(page->size());
      if (since_commit >= kRebuildCommitEvery) {
        writer_->database.commit();
        since_commit = 0;
      }
    }
    writer_->database.set_metadata(kSeqMetadataKey, std::to_string(after_seq));
    writer_->database.commit();
    last_update_seq_.store(after_seq);
    document_count_.store(writer_->database.get_doccount());
    generation_.fetch_add(1);
    state_.store(State::kReady);
    return absl::OkStatus();
  } catch (const Xapian::Error& error) {
    state_.store(State::kUnavailable);
    return absl::UnavailableError(fmt::format("search rebuild: {}", error.get_description()));
  }
}

uint64_t SearchIndex::PinGeneration() {
  std::lock_guard lock(pins_mutex_);
  const uint64_t generation = generation_.load();
  ++searches_by_generation_[generation];
  return generation;
}

void SearchIndex::UnpinGeneration(uint64_t generation) {
  {
    std::lock_guard lock(pins_mutex_);
    auto it = searches_by_generation_.find(generation);
    if (--it->second > 0) return;
    searches_by_generation_.erase(it);
  }
  pins_released_.notify_all();
}

void SearchIndex::WaitForSearchesBefore(uint64_t generation) {
  std::unique_lock lock(pins_mutex_);
  pins_released_.wait(lock, [&] {
    return searches_by_generation_.empty() || searches_by_generation_.begin()->first >= generation;
  });
}

std::unique_ptr<SearchIndex::Reader> SearchIndex::AcquireReader() {
  std::unique_ptr<Reader> reader;
  {
    std::lock_guard lock(pool_mutex_);
    if (!pool_.empty()) {
      reader = std::move(pool_.back());
      pool_.pop_back();
    }
  }
  const uint64_t generation = generation_.load();
  if (!reader) {
    reader = std::make_unique<Reader>(Reader{Xapian::Database(directory_), generation});
  } else if (reader->generation != generation) {
    reader->database.reopen();
    reader->generation = generation;
  }
  return reader;
}

void SearchIndex::ReleaseReader(std::unique_ptr<Reader> reader) {
  std::lock_guard lock(pool_mutex_);
  if (pool_.size() < kSearchReaderPoolMax) pool_.push_back(std::move(reader));
}

std::shared_ptr<const FacetOrdinals> SearchIndex::FacetColumnFor(Reader& reader) {
  const std::string uuid = reader.database.get_uuid();
  const Xapian::rev revision = reader.database.get_revision();
  auto usable = [&](const std::shared_ptr<const FacetOrdinals>& column) {
    return column != nullptr && column->uuid == uuid && column->revision >= revision;
  };
  std::shared_ptr<const FacetOrdinals> current;
  {
    std::lock_guard lock(facet_mutex_);
    current = facet_column_;
  }
  if (usable(current)) {
    // An older column is never used; a reader not reopened yet counts from the values.
    return current->revision == revision ? current : nullptr;
  }
  // The writer is committing a revision whose column it derives: count from the values now,
  // the column is published right after. (Checked before looking again, so a column published
  // in between is found.)
  const bool coming = facet_column_coming_.load();
  {
    std::lock_guard lock(facet_mutex_);
    current = facet_column_;
  }
  if (usable(current)) return current->revision == revision ? current : nullptr;
  if (coming) return nullptr;
  // One search builds at a time; the others count from the values meanwhile.
  if (facet_column_building_.exchange(true)) return nullptr;
  struct BuildingFlag {
    std::atomic<bool>& flag;
    ~BuildingFlag() { flag.store(false); }
  } building{facet_column_building_};
  auto built = std::make_shared<FacetOrdinals>();
  if (!BuildFacetOrdinals(reader.database, *built)) return nullptr;
  facet_column_builds_.fetch_add(1);
  std::lock_guard lock(facet_mutex_);
  // Kept only for the index the writer has open (not one a rebuild has replaced since) and if
  // nothing newer was published meanwhile.
  if (built->uuid == index_uuid_ &&
      (facet_column_ == nullptr || facet_column_->uuid != built->uuid ||
       facet_column_->revision < built->revision)) {
    facet_column_ = built;
  }
  return built;
}

absl::StatusOr<SearchResult> SearchIndex::Search(const SearchQuery& query) {
  switch (state_.load()) {
    case State::kUnavailable:
      return absl::UnavailableError("search index is unavailable");
    case State::kRebuilding:
      return absl::UnavailableError("search index is rebuilding");
    case State::kReady:
      break;
  }
  for (int attempt = 0; attempt < 2; ++attempt) {
    // Pinned before the reader opens its revision, so the writer cannot start the batch after
    // next while this search can still read it (see Apply).
    struct Pin {
      SearchIndex& index;
      const uint64_t generation;
      ~Pin() { index.UnpinGeneration(generation); }
    } pin{*this, PinGeneration()};
    std::unique_ptr<Reader> reader;
    try {
      reader = AcquireReader();
      // Every Xapian object below (parser, queries, enquire, mset, documents) holds references
      // into the reader's Database, counted without atomics; they must all be gone before the
      // reader goes back to the pool and another thread takes it, so SearchOn makes them all.
      const std::shared_ptr<const FacetOrdinals> facet_column = FacetColumnFor(*reader);
      SearchResult result = SearchOn(reader->database, query, facet_column.get());
      ReleaseReader(std::move(reader));
      return result;
    } catch (const Xapian::DatabaseModifiedError&) {
      // The writer committed twice since this reader opened; drop it and retry on a fresh one.
      continue;
    } catch (const Xapian::QueryParserError& error) {
      return absl::InvalidArgumentError(fmt::format("bad query: {}", error.get_msg()));
    } catch (const Xapian::Error& error) {
      return absl::UnavailableError(fmt::format("search: {}", error.get_description()));
    }
  }
  return absl::UnavailableError("search index is changing too fast; retry");
}

}  // namespace emporium::catalog
