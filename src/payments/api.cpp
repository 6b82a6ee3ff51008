#include "payments/api.h"

namespace emporium::payments {

void AddPaymentsRoutes(http::Router&, PaymentsService&, ApiOptions) {}

}  // namespace emporium::payments
