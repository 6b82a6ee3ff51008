// The payments database schema: numbered migrations embedded from src/payments/migrations.
#pragma once

#include <vector>

#include "platform/sql/migrations.h"

namespace emporium::payments {

// Applied under the component name "payments".
std::vector<sql::Migration> PaymentsMigrations();

}  // namespace emporium::payments
