#include "catalog/seed.h"

#include <array>

#include "fmt/format.h"

namespace emporium::catalog {
namespace {

// SplitMix64: a tiny, well-mixed deterministic generator.
class Random {
 public:
  explicit Random(uint64_t state) : state_(state) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  int64_t Between(int64_t low, int64_t high) {  // inclusive
    return low + static_cast<int64_t>(Next() % static_cast<uint64_t>(high - low + 1));
  }
  template <typename T, size_t N>
  const T& Pick(const std::array<T, N>& items) {
    return items[Next() % N];
  }

 private:
  uint64_t state_;
};

struct Department {
  const char* category;
  const char* noun;
  std::array<const char*, 4> adjectives;
};

constexpr std::array<Department, 16> kDepartments = {{
    {"apparel/shoes/running", "Running Shoe", {"Featherlight", "Tempo", "Trail", "Cushioned"}},
    {"apparel/shoes/hiking", "Hiking Boot", {"Waterproof", "Alpine", "Rugged", "Mid-Cut"}},
    {"apparel/tops/t-shirts", "T-Shirt", {"Organic", "Classic", "Slim-Fit", "Heavyweight"}},
    {"apparel/tops/hoodies", "Hoodie", {"Fleece", "Zip", "Oversized", "Everyday"}},
    {"apparel/outerwear", "Rain Jacket", {"Packable", "Insulated", "Storm", "City"}},
    {"electronics/audio/headphones",
     "Headphones",
     {"Noise-Cancelling", "Wireless", "Studio", "Sport"}},
    {"electronics/audio/speakers",
     "Bluetooth Speaker",
     {"Portable", "Waterproof", "Smart", "Mini"}},
    {"electronics/computers/keyboards",
     "Mechanical Keyboard",
     {"Compact", "Low-Profile", "Wireless", "Backlit"}},
    {"electronics/computers/monitors", "Monitor", {"4K", "Ultrawide", "Curved", "Portable"}},
    {"home/kitchen/cookware", "Frying Pan", {"Cast-Iron", "Nonstick", "Stainless", "Carbon-Steel"}},
    {"home/kitchen/coffee", "Coffee Grinder", {"Burr", "Manual", "Electric", "Precision"}},
    {"home/furniture", "Desk Chair", {"Ergonomic", "Mesh", "Executive", "Compact"}},
    {"home/bedding", "Duvet Cover", {"Linen", "Percale", "Sateen", "Washed-Cotton"}},
    {"outdoors/camping/tents", "Tent", {"Ultralight", "Family", "Four-Season", "Pop-Up"}},
    {"outdoors/camping/sleeping-bags",
     "Sleeping Bag",
     {"Down", "Synthetic", "Mummy", "Rectangular"}},
    {"outdoors/cycling", "Bike Light", {"Rechargeable", "High-Lumen", "Rear", "Commuter"}},
}};

constexpr std::array<const char*, 12> kBrands = {"Northwind", "Acme",     "Larkspur", "Halcyon",
                                                 "Kestrel",   "Bramble",  "Orbit",    "Tidewater",
                                                 "Summit",    "Ironbark", "Lumen",    "Fjord"};
constexpr std::array<const char*, 8> kColours = {"black", "white", "navy", "olive",
                                                 "grey",  "red",   "sand", "teal"};
constexpr std::array<const char*, 5> kSizes = {"XS", "S", "M", "L", "XL"};
constexpr std::array<const char*, 6> kMaterials = {"cotton", "recycled polyester", "aluminium",
                                                   "steel",  "merino wool",        "bamboo"};
constexpr std::array<const char*, 10> kAuthors = {"alex",   "sam",   "jordan", "casey", "riley",
                                                  "morgan", "jamie", "taylor", "drew",  "quinn"};
constexpr std::array<const char*, 5> kReviewTitles = {"Not for me", "Okay", "Good value",
                                                      "Really good", "Excellent"};

std::string Slug(const std::string& text) {
  std::string slug;
  for (char c : text) {
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
      slug.push_back(c);
    } else if (c >= 'A' && c <= 'Z') {
      slug.push_back(static_cast<char>(c - 'A' + 'a'));
    } else if (!slug.empty() && slug.back() != '-') {
      slug.push_back('-');
    }
  }
  while (!slug.empty() && slug.back() == '-') slug.pop_back();
  return slug;
}

std::string Decimal(int64_t minor) { return fmt::format("{}.{:02}", minor / 100, minor % 100); }

}  // namespace

Json SeedProduct(uint64_t seed, int64_t index) {
  Random random(seed * 1'000'003ULL + static_cast<uint64_t>(index));
  const Department& department = random.Pick(kDepartments);
  const std::string brand = random.Pick(kBrands);
  const std::string adjective = random.Pick(department.adjectives);
  const std::string model =
      fmt::format("{}{}", static_cast<char>('A' + random.Between(0, 25)), random.Between(100, 999));
  const std::string title = fmt::format("{} {} {} {}", brand, adjective, department.noun, model);
  const std::string material = random.Pick(kMaterials);
  const std::string handle = fmt::format("{}-{}", Slug(title), index);
  const int64_t base_usd = random.Between(9, 400) * 100 + 99;
  Json variants = Json::array();
  const int64_t colours = random.Between(1, 3);
  const bool sized = std::string(department.category).rfind("apparel", 0) == 0;
  const int64_t sizes = sized ? random.Between(2, 4) : 1;
  const std::string sku_base = fmt::format("{}-{:06}", Slug(brand).substr(0, 3), index);
  for (int64_t c = 0; c < colours; ++c) {
    const std::string colour = kColours[(index + c) % kColours.size()];
    for (int64_t s = 0; s < sizes; ++s) {
      Json options = {{"colour", colour}};
      if (sized) options["size"] = kSizes[static_cast<size_t>(s + 1) % kSizes.size()];
      const int64_t usd = base_usd + s * 200;
      variants.push_back({{"sku", fmt::format("{}-{}{}", sku_base, c, s)},
                          {"options", options},
                          {"prices",
                           {{"USD", Decimal(usd)},
                            {"EUR", Decimal(usd * 92 / 100)},
                            {"GBP", Decimal(usd * 79 / 100)}}},
                          {"weight_grams", random.Between(50, 5000)}});
    }
  }
  return Json{
      {"handle", handle},
      {"title", title},
      {"description",
       fmt::format("The {} {} {} by {} is made from {} and built to last. A favourite for "
                   "everyday use, backed by a two-year warranty.",
                   adjective, department.noun, model, brand, material)},
      {"brand", brand},
      {"category", department.category},
      {"status", "active"},
      {"attributes",
       {{"material", material},
        {"warranty_years", 2},
        {"eco", random.Between(0, 3) == 0},
        {"colours", Json::array()}}},
      {"images", {{{"url", fmt::format("/static/products/{}-1.jpg", handle)}, {"alt", title}}}},
      {"variants", variants}};
}

std::vector<Json> SeedReviews(uint64_t seed, int64_t index) {
  Random random(seed * 7'919ULL + static_cast<uint64_t>(index) + 17);
  std::vector<Json> reviews;
  const int64_t count = random.Between(0, 3);
  for (int64_t i = 0; i < count; ++i) {
    const int64_t rating = random.Between(2, 5);
    reviews.push_back({{"author", kAuthors[static_cast<size_t>(index + i) % kAuthors.size()]},
                       {"rating", rating},
                       {"title", kReviewTitles[static_cast<size_t>(rating - 1)]},
                       {"body", "Bought this a month ago and have used it every day since."}});
  }
  return reviews;
}

}  // namespace emporium::catalog
