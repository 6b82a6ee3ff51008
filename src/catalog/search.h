// Full-text product search over Xapian: BM25 ranking, English stemming, prefix matching on the
// last word (type-ahead; the prefix expands to its 50 most frequent completions at most), field
// weights title > brand > description, and facet counts for brand, category and price bucket
// computed in the same query over the matches (see kSearchExactMatchesMax). A document keeps its
// three facets in one value slot, so counting reads one value per match. Terms are indexed
// without positions: a "quoted phrase" (or NEAR) matches as the AND of its words, never exactly
// (an index written with positions answers the same way; `catalog reindex` shrinks it). A hit's
// summary is a value slot, not the document data (which glass zlib-compresses per document);
// documents indexed before that keep theirs in the data and are read from there.
//
// The index lives in a directory under the data dir. One WritableDatabase is owned by the
// catalog processor (Apply/Rebuild from that one thread); searches run on any thread with
// pooled read-only databases that reopen when the writer has committed since they were opened.
// While the index is unavailable (failed to open) or rebuilding, Search returns Unavailable
// at once; it never waits on the writer.
//
// Facet counting reads an in-memory column of each document's facets (ordinals per docid,
// like a search engine's doc values); reading the value from the index for every match was
// half of a broad query's CPU (a B-tree lookup and pread per few documents). The first search
// on an index with no column builds it from the facet value slot (~10 ms per 100k documents);
// from then on the writer derives each commit's column from the previous one plus that
// commit's changes (copy-on-write chunks) and publishes it tagged with the revision it
// committed, so searches on the new revision find it at once. Searches that find no column for
// their revision (it is being built or published, the reader is older, the index is in an
// older layout) count from the index's values as before, so counts never depend on it.
//
// Thread-safety: Search, state() and document_count() from any thread; Open, Apply and Rebuild
// from the processor thread only.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "catalog/store.h"
#include "common/json.h"

namespace emporium::catalog {
namespace search_internal {
struct FacetOrdinals;  // the facet column of one index revision (search.cpp)
}  // namespace search_internal

inline constexpr int64_t kSearchLimitMax = 100;
inline constexpr size_t kSearchQueryBytesMax = 500;
inline constexpr size_t kSearchReaderPoolMax = 16;
// The in-memory facet column holds 12 bytes per docid up to the index's last docid; an index
// with more docids than this counts facets from its value slot instead (no column).
inline constexpr uint32_t kSearchFacetColumnDocidsMax = 4'000'000;

struct SearchQuery {
  std::string text;
  std::optional<std::string> brand;
  std::optional<std::string> category;  // subtree
  int64_t offset = 0;
  int64_t limit = 20;
};

struct FacetCount {
  std::string value;
  int64_t count = 0;
};

struct SearchHit {
  std::string product_id;
  double score = 0;
  Json summary;  // id, handle, title, brand, category, price
};

// Facets and the total are counted exactly over at most this many of the best matches; a
// broader match (a one-word query on a 100k catalog matches tens of thousands) scales the
// sample's counts up to the estimated total instead, so a query costs a bounded amount.
inline constexpr int64_t kSearchExactMatchesMax = 5000;

struct SearchResult {
  int64_t total = 0;  // number of matching products; an estimate when !exact
  bool exact = true;  // false: total and facet counts are estimated from the best matches
  std::vector<SearchHit> hits;
  std::vector<FacetCount> brands;
  std::vector<FacetCount> categories;
  std::vector<FacetCount> price_buckets;  // by the lowest USD price
};

// The price bucket label of a USD amount in minor units ("0-25", "25-50", ... "250+").
std::string PriceBucket(int64_t usd_minor);

class SearchIndex {
 public:
  enum class State { kUnavailable, kReady, kRebuilding };

  explicit SearchIndex(std::string directory);
  ~SearchIndex();
  SearchIndex(const SearchIndex&) = delete;
  SearchIndex& operator=(const SearchIndex&) = delete;

  // Opens (creating) the writable index. Unavailable if another process holds the write lock
  // or the files are damaged; the index then stays unavailable.
  absl::Status Open();
  // Indexes active products and removes every other one, then commits, recording
  // `last_update_seq` so a restart knows where to catch up from.
  absl::Status Apply(const std::vector<StoredProduct>& products, int64_t last_update_seq);
  // The update seq the index has caught up to (0 for a new index).
  int64_t last_update_seq() const { return last_update_seq_.load(); }
  // Rebuilds from scratch: `next_page(after_seq)` yields products in seq order, empty when
  // done. Searches answer Unavailable meanwhile; reads elsewhere are unaffected.
  absl::Status Rebuild(
      const std::function<absl::StatusOr<std::vector<StoredProduct>>(int64_t)>& next_page);

  absl::StatusOr<SearchResult> Search(const SearchQuery& query);

  State state() const { return state_.load(); }
  int64_t document_count() const { return document_count_.load(); }
  // How many facet columns searches have built from the index (not derived by the writer).
  int64_t facet_column_builds() const { return facet_column_builds_.load(); }
  // Test hook: forces the state (e.g. kUnavailable to exercise the 503 path).
  void SetStateForTest(State state) { state_.store(state); }

 private:
  struct Writer;
  struct Reader;
  absl::Status IndexProducts(const std::vector<StoredProduct>& products);
  std::unique_ptr<Reader> AcquireReader();
  void ReleaseReader(std::unique_ptr<Reader> reader);
  // The facet column for the reader's revision: the published one, or one built now from the
  // reader if this revision is newer and no other search is building one; null otherwise.
  std::shared_ptr<const search_internal::FacetOrdinals> FacetColumnFor(Reader& reader);
  // A search in flight registers the generation it started at (returned); see Apply.
  uint64_t PinGeneration();
  void UnpinGeneration(uint64_t generation);
  // Waits until no search that started before `generation` is still running.
  void WaitForSearchesBefore(uint64_t generation);

  const std::string directory_;
  std::unique_ptr<Writer> writer_;
  std::atomic<State> state_{State::kUnavailable};
  std::atomic<uint64_t> generation_{0};  // bumped after every commit
  std::atomic<int64_t> last_update_seq_{0};
  std::atomic<int64_t> document_count_{0};
  std::mutex pool_mutex_;
  std::vector<std::unique_ptr<Reader>> pool_;
  // Searches in flight, counted by the generation they started at.
  std::mutex pins_mutex_;
  std::condition_variable pins_released_;
  std::map<uint64_t, int64_t> searches_by_generation_;
  // Guards facet_column_ and index_uuid_ (a pointer swap, never held while building).
  std::mutex facet_mutex_;
  // The newest column (the writer's, or one a search built); older ones live as long as the
  // searches holding them.
  std::shared_ptr<const search_internal::FacetOrdinals> facet_column_;
  std::string index_uuid_;  // of the index the writer has open
  std::atomic<bool> facet_column_building_{false};
  std::atomic<bool> facet_column_coming_{false};  // the writer is committing a derived column
  std::atomic<int64_t> facet_column_builds_{0};
};

}  // namespace emporium::catalog
