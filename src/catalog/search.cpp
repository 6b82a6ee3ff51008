#include "catalog/search.h"

#include <xapian.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>

#include "common/format.h"
#include "fmt/format.h"

namespace emporium::catalog {
namespace {

constexpr Xapian::valueno kBrandSlot = 0;
constexpr Xapian::valueno kCategorySlot = 1;
constexpr Xapian::valueno kPriceBucketSlot = 2;
constexpr Xapian::termcount kTitleWeight = 3;
constexpr Xapian::termcount kBrandWeight = 2;
constexpr Xapian::termcount kDescriptionWeight = 1;
constexpr int64_t kRebuildCommitEvery = 20'000;
constexpr const char* kSeqMetadataKey = "last_update_seq";

std::string Lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

Xapian::Document MakeDocument(const Product& product) {
  Xapian::TermGenerator generator;
  generator.set_stemmer(Xapian::Stem("english"));
  Xapian::Document document;
  generator.set_document(document);
  generator.index_text(product.title, kTitleWeight);
  generator.increase_termpos();
  generator.index_text(product.brand, kBrandWeight);
  generator.increase_termpos();
  generator.index_text(product.description, kDescriptionWeight);
  document.add_boolean_term("Q" + product.id);
  if (!product.brand.empty()) document.add_boolean_term("XB" + Lower(product.brand));
  for (const std::string& path : CategoryAncestors(product.category)) {
    document.add_boolean_term("XC" + path);
  }
  document.add_value(kBrandSlot, product.brand);
  document.add_value(kCategorySlot, product.category);
  std::optional<Money> usd = LowestPrice(product, "USD");
  Json summary = {
      {"id", product.id},       {"handle", product.handle},     {"title", product.title},
      {"brand", product.brand}, {"category", product.category}, {"version", product.version}};
  if (usd) {
    document.add_value(kPriceBucketSlot, PriceBucket(usd->amount_minor()));
    summary["price"] = {{"USD", usd->ToDecimalString()}};
  }
  if (!product.images.empty()) summary["image"] = product.images.front().url;
  document.set_data(DumpJson(summary));
  return document;
}

std::vector<FacetCount> Facets(const Xapian::ValueCountMatchSpy& spy) {
  std::vector<FacetCount> facets;
  for (auto it = spy.values_begin(); it != spy.values_end(); ++it) {
    if ((*it).empty()) continue;
    facets.push_back(FacetCount{*it, static_cast<int64_t>(it.get_termfreq())});
  }
  std::sort(facets.begin(), facets.end(), [](const FacetCount& a, const FacetCount& b) {
    return a.count != b.count ? a.count > b.count : a.value < b.value;
  });
  return facets;
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
  Xapian::WritableDatabase database;
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
    writer_ = std::make_unique<Writer>(
        Writer{Xapian::WritableDatabase(directory_, Xapian::DB_CREATE_OR_OPEN)});
    const std::string seq = writer_->database.get_metadata(kSeqMetadataKey);
    last_update_seq_.store(seq.empty() ? 0 : std::stoll(seq));
    document_count_.store(writer_->database.get_doccount());
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
    if (stored.product.status == ProductStatus::kActive) {
      writer_->database.replace_document(id_term, MakeDocument(stored.product));
    } else {
      writer_->database.delete_document(id_term);
    }
  }
  return absl::OkStatus();
}

absl::Status SearchIndex::Apply(const std::vector<StoredProduct>& products,
                                int64_t last_update_seq) {
  if (!writer_) return absl::UnavailableError("search index is not open");
  try {
    if (absl::Status status = IndexProducts(products); !status.ok()) return status;
    writer_->database.set_metadata(kSeqMetadataKey, std::to_string(last_update_seq));
    writer_->database.commit();
    last_update_seq_.store(last_update_seq);
    document_count_.store(writer_->database.get_doccount());
    generation_.fetch_add(1);
    return absl::OkStatus();
  } catch (const Xapian::Error& error) {
    return absl::UnavailableError(fmt::format("search index: {}", error.get_description()));
  }
}

absl::Status SearchIndex::Rebuild(
    const std::function<absl::StatusOr<std::vector<StoredProduct>>(int64_t)>& next_page) {
  state_.store(State::kRebuilding);
  try {
    if (writer_) writer_->database.close();
    writer_ = std::make_unique<Writer>(
        Writer{Xapian::WritableDatabase(directory_, Xapian::DB_CREATE_OR_OVERWRITE)});
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
    std::unique_ptr<Reader> reader;
    try {
      reader = AcquireReader();
      Xapian::Database& database = reader->database;
      Xapian::QueryParser parser;
      parser.set_stemmer(Xapian::Stem("english"));
      parser.set_stemming_strategy(Xapian::QueryParser::STEM_SOME);
      parser.set_database(database);
      parser.set_default_op(Xapian::Query::OP_AND);
      Xapian::Query text_query =
          query.text.empty()
              ? Xapian::Query::MatchAll
              : parser.parse_query(query.text, Xapian::QueryParser::FLAG_DEFAULT |
                                                   Xapian::QueryParser::FLAG_PARTIAL);
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
      Xapian::ValueCountMatchSpy brands(kBrandSlot);
      Xapian::ValueCountMatchSpy categories(kCategorySlot);
      Xapian::ValueCountMatchSpy prices(kPriceBucketSlot);
      enquire.add_matchspy(&brands);
      enquire.add_matchspy(&categories);
      enquire.add_matchspy(&prices);
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
        absl::StatusOr<Json> summary = ParseJson(it.get_document().get_data());
        hit.summary = summary.ok() ? *summary : Json::object();
        hit.product_id = hit.summary.value("id", std::string());
        hit.score = it.get_weight();
        result.hits.push_back(std::move(hit));
      }
      result.brands = Facets(brands);
      result.categories = Facets(categories);
      result.price_buckets = Facets(prices);
      if (!result.exact && brands.get_total() > 0) {
        const double scale =
            static_cast<double>(result.total) / static_cast<double>(brands.get_total());
        for (auto* facets : {&result.brands, &result.categories, &result.price_buckets}) {
          for (FacetCount& facet : *facets) {
            facet.count = std::llround(static_cast<double>(facet.count) * scale);
          }
        }
      }
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
