#include "app/openapi.h"

#include <algorithm>
#include <cctype>
#include <charconv>

#include "fmt/format.h"
#include "yaml-cpp/yaml.h"

namespace emporium::app {

std::string_view EmbeddedOpenApiYaml();  // generated from docs/openapi.yaml

namespace {

Json ScalarToJson(const YAML::Node& node) {
  const std::string& text = node.Scalar();
  // A quoted scalar carries the "!" tag: keep it a string ("200", "null").
  if (node.Tag() == "!") return text;
  if (text == "null" || text == "~" || text.empty()) return nullptr;
  if (text == "true") return true;
  if (text == "false") return false;
  int64_t integer = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), integer);
  if (error == std::errc() && end == text.data() + text.size()) return integer;
  double number = 0;
  auto [double_end, double_error] = std::from_chars(text.data(), text.data() + text.size(), number);
  if (double_error == std::errc() && double_end == text.data() + text.size()) return number;
  return text;
}

Json NodeToJson(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return nullptr;
    case YAML::NodeType::Scalar:
      return ScalarToJson(node);
    case YAML::NodeType::Sequence: {
      Json array = Json::array();
      for (const YAML::Node& item : node) array.push_back(NodeToJson(item));
      return array;
    }
    case YAML::NodeType::Map: {
      Json object = Json::object();
      for (const auto& entry : node) object[entry.first.Scalar()] = NodeToJson(entry.second);
      return object;
    }
  }
  return nullptr;
}

}  // namespace

std::string_view OpenApiYaml() { return EmbeddedOpenApiYaml(); }

absl::StatusOr<Json> YamlToJson(std::string_view yaml) {
  try {
    return NodeToJson(YAML::Load(std::string(yaml)));
  } catch (const YAML::Exception& error) {
    return absl::InvalidArgumentError(fmt::format("invalid YAML: {}", error.what()));
  }
}

absl::StatusOr<Json> OpenApiJson() {
  static const absl::StatusOr<Json> document = YamlToJson(OpenApiYaml());
  return document;
}

std::vector<std::pair<std::string, std::string>> OpenApiRoutes(const Json& document) {
  std::vector<std::pair<std::string, std::string>> routes;
  auto paths = document.find("paths");
  if (paths == document.end() || !paths->is_object()) return routes;
  for (const auto& [path, operations] : paths->items()) {
    if (!operations.is_object()) continue;
    for (const auto& [method, operation] : operations.items()) {
      static constexpr std::string_view kMethods[] = {"get",   "put",  "post",   "delete",
                                                      "patch", "head", "options"};
      if (std::find(std::begin(kMethods), std::end(kMethods), method) == std::end(kMethods)) {
        continue;  // "parameters", "summary" and other path-level keys
      }
      std::string upper = method;
      for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      routes.emplace_back(upper, path);
    }
  }
  std::sort(routes.begin(), routes.end());
  return routes;
}

}  // namespace emporium::app
