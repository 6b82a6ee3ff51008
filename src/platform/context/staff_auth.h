// Staff authentication for /api/v1/admin routes until accounts with roles exist: the caller
// sends `Authorization: Bearer <admin api key>`, compared in constant time.
#pragma once

#include <string>
#include <string_view>

#include "platform/http/message.h"

namespace emporium {

// True when `request` carries the admin key. Otherwise fills `denied` with the 401 to send.
// An empty `admin_api_key` denies everyone.
bool AuthorizeAdmin(const http::Request& request, const std::string& admin_api_key,
                    http::Response& denied);

// Compares without an early exit, so timing does not reveal how much of a secret matched.
bool ConstantTimeEquals(std::string_view a, std::string_view b);

}  // namespace emporium
